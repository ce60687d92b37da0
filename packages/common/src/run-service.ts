import { describeStartupFailure } from './cli-failure.js';
import { ConclaveError } from './errors/conclave-error.js';
import type { ErrorCode } from './errors/catalog/index.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-codes.js';
import type { LogMeta, Logger } from './logger.js';
import { formatReadinessLine, type Readiness } from './readiness.js';

/**
 * How long a service may take to close after a shutdown request or a fatal event. Past it the
 * run ends with EXIT_FAILURE: the process exits even if something in it still hangs.
 */
export const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

/** How long a finished executable waits for open handles (sockets, log files) before it exits anyway. */
export const EXIT_GRACE_MS = 2_000;

export interface TextOut {
  write(chunk: string): unknown;
}

/** A started service, as `runService` drives it. */
export interface RunningService {
  /**
   * Resolves with its readiness once it can do its work; `runService` writes it as the readiness
   * line. May never settle (an agent that cannot reach its orchestrator keeps trying). Rejects
   * when it will never be ready for a cause that a restart does not cure (a model that cannot
   * load): that cause was logged with its code where it happened, so the run adds no line and
   * ends with EXIT_USAGE, which the deploy units do not restart.
   */
  readonly ready: Promise<Readiness>;
  /**
   * Settles when the service has stopped working for good while running (the orchestrator
   * refused the node): the run writes its coded line to stderr and ends with EXIT_FAILURE.
   */
  readonly fatal?: Promise<unknown>;
  close(): Promise<void>;
}

export interface RunServiceOptions<S extends RunningService> {
  /**
   * Starts the service. A failure is one coded line on stderr, not logged as well (the console
   * would show the same failure twice), and its exit code: 2 for bad input, 1 otherwise.
   */
  start(): Promise<S>;
  /** Called once the service has started: resolves with the reason (a signal name, 'parent gone'). */
  shutdownRequested(): Promise<string>;
  logger: Logger;
  /** Where the readiness line goes. */
  stdout: TextOut;
  /** Where the one coded failure line goes. */
  stderr: TextOut;
  /** The executable's code for a failure with no code of its own (`ORCH-STATE-707`). */
  fallbackCode: ErrorCode;
  /** Added to the `shutting down` and stopped lines (`{ node }`). */
  logMeta?: (service: S) => LogMeta;
  /** Says that a shutdown was requested. @default logs CLEAN `shutting down` with the reason as `signal` */
  onShutdownRequested?: (reason: string, service: S) => void;
  /** Logged under CLEAN once the service has closed after a shutdown request; nothing when absent. */
  stoppedMessage?: string;
  /** @default DEFAULT_CLOSE_TIMEOUT_MS */
  closeTimeoutMs?: number;
}

type Ending = { kind: 'shutdown'; reason: string } | { kind: 'fatal'; error: unknown } | { kind: 'unready' };

/**
 * Runs one long-lived service the way every Conclave executable runs (docs/cli.md, "Exit
 * codes"): start it, write its readiness line once it is ready, wait for a shutdown request or a
 * fatal event, close it within `closeTimeoutMs`. Resolves with the exit code: 0 after a clean
 * close on request; 1 for a start-up failure, a fatal event, or a close that failed or hung; 2
 * for bad input at start-up or a service that can never get ready.
 */
export async function runService<S extends RunningService>(o: RunServiceOptions<S>): Promise<number> {
  let service: S;
  try {
    service = await o.start();
  } catch (err) {
    const failure = describeStartupFailure(err, o.fallbackCode);
    o.stderr.write(`${failure.line}\n`);
    return failure.exitCode;
  }
  let ended = false;
  const never = new Promise<never>(() => undefined);
  const ending = await Promise.race<Ending>([
    o.shutdownRequested().then((reason) => ({ kind: 'shutdown', reason })),
    ...(service.fatal ? [service.fatal.then((error): Ending => ({ kind: 'fatal', error }))] : []),
    service.ready.then(
      (readiness) => {
        // A service that ended before it got ready stays silent: its parent must not take it for ready.
        if (!ended) o.stdout.write(formatReadinessLine(readiness));
        return never;
      },
      (): Ending => ({ kind: 'unready' }),
    ),
  ]);
  ended = true;
  const meta = o.logMeta?.(service) ?? {};
  let exitCode: number;
  switch (ending.kind) {
    case 'shutdown':
      if (o.onShutdownRequested) o.onShutdownRequested(ending.reason, service);
      else o.logger.info('CLEAN', 'shutting down', { signal: ending.reason, ...meta });
      exitCode = EXIT_OK;
      break;
    case 'fatal':
      // Already logged with its code; an operator must act (approve, re-enroll, check the pin).
      o.stderr.write(`${describeStartupFailure(ending.error, o.fallbackCode).line}\n`);
      exitCode = EXIT_FAILURE;
      break;
    case 'unready':
      exitCode = EXIT_USAGE;
      break;
  }
  if (!(await closeWithin(service, o.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS, o))) return EXIT_FAILURE;
  if (exitCode === EXIT_OK && o.stoppedMessage !== undefined) o.logger.info('CLEAN', o.stoppedMessage, meta);
  return exitCode;
}

/** Closes the service; false (and logged) when the close failed or did not finish in time. */
async function closeWithin(
  service: RunningService,
  timeoutMs: number,
  o: Pick<RunServiceOptions<RunningService>, 'logger' | 'fallbackCode'>,
): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ConclaveError(o.fallbackCode, { detail: `shutdown did not finish within ${timeoutMs} ms` })),
      timeoutMs,
    );
  });
  try {
    await Promise.race([service.close(), timeout]);
    return true;
  } catch (err) {
    o.logger.failure(err, { section: 'CLEAN' });
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Ends the process with `exitCode` once nothing keeps it alive, or after `graceMs` at the latest
 * (a gRPC channel or a log file that does not let go).
 */
export function exitWhenIdle(exitCode: number, graceMs = EXIT_GRACE_MS): void {
  process.exitCode = exitCode;
  setTimeout(() => process.exit(exitCode), graceMs).unref();
}
