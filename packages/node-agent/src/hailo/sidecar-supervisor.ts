import { spawn, type ChildProcess } from 'node:child_process';
import { lstat, unlink } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import {
  Backoff, ConclaveError, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_CAP_MS, LOG_LEVELS, SECTIONS, sleep,
  toConclaveError, type LogLevel, type Logger, type Section,
} from '@conclave/common';
import type { SidecarDeviceInfo__Output } from '@conclave/protocol';
import { SidecarClient, type SidecarClientOptions } from './sidecar-client.js';

/** The line a spawned sidecar prints on stdout once it listens on its socket. */
export const SIDECAR_READY_LINE = 'READY';
/** A HailoRT import and device open take a few seconds on a Pi 5; 20 s is far past that. */
export const DEFAULT_SIDECAR_READY_TIMEOUT_MS = 20_000;
/** A run that stays up this long resets the restart backoff: it was not a crash loop. */
export const DEFAULT_SIDECAR_STABLE_AFTER_MS = 30_000;
/** SIGTERM, then SIGKILL after this; the sidecar only has to release the device. */
export const DEFAULT_SIDECAR_STOP_GRACE_MS = 3_000;
/** Stderr lines kept to explain an exit. */
const STDERR_TAIL_LINES = 20;
/**
 * How long after its exit a child's stderr may still be drained: a line written just before
 * the exit may still be in the pipe. Bounded, because a grandchild could hold the pipe open.
 */
const STDERR_DRAIN_AFTER_EXIT_MS = 200;
/**
 * When the connection drops first, how long to wait for the child's exit, which says more
 * (exit code, last stderr line) than "connection lost". A sidecar that really died exits
 * within milliseconds of its socket closing.
 */
const EXIT_AFTER_CONNECTION_LOSS_MS = 250;

/**
 * `starting` (spawning or connecting) → `up` (connected, device info read) → `down` (waiting
 * for the next try) → `starting` …; `stopped` from any state, for good.
 */
export type SidecarState = 'starting' | 'up' | 'down' | 'stopped';

const TRANSITIONS: Readonly<Record<SidecarState, readonly SidecarState[]>> = {
  starting: ['up', 'down', 'stopped'],
  up: ['down', 'stopped'],
  down: ['starting', 'stopped'],
  stopped: [],
};

export interface SidecarChange {
  /** Set in `up`: the connection to use. */
  readonly client?: SidecarClient;
  /** Set in `up`: what the sidecar says about the chip. */
  readonly device?: SidecarDeviceInfo__Output;
  /** Set in `down`: why (NODE-STATE-730 exited, NODE-STATE-731 could not start, NODE-NET-63x, NODE-AUTH-590). */
  readonly reason?: ConclaveError;
  /** Set in `down`: when the next try starts. */
  readonly retryInMs?: number;
}

export type SidecarListener = (state: SidecarState, change: SidecarChange) => void;

export interface SidecarSupervisorOptions {
  logger: Logger;
  /** The sidecar's unix socket: passed to a spawned one as `--socket PATH`, or the one systemd's unit owns. */
  socketPath: string;
  /**
   * The sidecar's command line, without `--socket` (e.g. `['python3', '/opt/conclave/hailo-sidecar/conclave-hailo-sidecar']`).
   * @default none: attach to a sidecar started by someone else (systemd) at `socketPath`
   */
  command?: readonly string[];
  /** Set over this process's environment for a spawned sidecar. @default {} */
  env?: NodeJS.ProcessEnv;
  /** First restart delay ceiling. @default DEFAULT_BACKOFF_BASE_MS (250) */
  restartBaseMs?: number;
  /** No restart delay exceeds this. @default DEFAULT_BACKOFF_CAP_MS (30 000) */
  restartCapMs?: number;
  /** An `up` that lasts this long resets the backoff. @default DEFAULT_SIDECAR_STABLE_AFTER_MS (30 000) */
  stableAfterMs?: number;
  /** How long a spawned sidecar may take to print READY. @default DEFAULT_SIDECAR_READY_TIMEOUT_MS (20 000) */
  readyTimeoutMs?: number;
  /** SIGTERM, then SIGKILL after this. @default DEFAULT_SIDECAR_STOP_GRACE_MS (3 000) */
  stopGraceMs?: number;
  /** For the connection; the logger is the supervisor's. @default SidecarClient's defaults */
  client?: Omit<SidecarClientOptions, 'logger'>;
  /** A number in [0, 1) for the backoff's jitter; injected by tests. @default Math.random */
  random?: () => number;
}

export interface ResolvedSidecarSupervisorOptions {
  readonly logger: Logger;
  readonly socketPath: string;
  readonly command: readonly string[] | undefined;
  readonly env: NodeJS.ProcessEnv;
  readonly restartBaseMs: number;
  readonly restartCapMs: number;
  readonly stableAfterMs: number;
  readonly readyTimeoutMs: number;
  readonly stopGraceMs: number;
  readonly client: Omit<SidecarClientOptions, 'logger'>;
  readonly random: () => number;
}

export function resolveSidecarSupervisorOptions(options: SidecarSupervisorOptions): ResolvedSidecarSupervisorOptions {
  if (!options.socketPath) throw new RangeError('SidecarSupervisor: socketPath is required');
  if (options.command !== undefined && (options.command.length === 0 || !options.command[0])) {
    throw new RangeError('SidecarSupervisor: command must name a program');
  }
  const resolved: ResolvedSidecarSupervisorOptions = {
    logger: options.logger,
    socketPath: options.socketPath,
    command: options.command ? [...options.command] : undefined,
    env: options.env ?? {},
    restartBaseMs: options.restartBaseMs ?? DEFAULT_BACKOFF_BASE_MS,
    restartCapMs: options.restartCapMs ?? DEFAULT_BACKOFF_CAP_MS,
    stableAfterMs: options.stableAfterMs ?? DEFAULT_SIDECAR_STABLE_AFTER_MS,
    readyTimeoutMs: options.readyTimeoutMs ?? DEFAULT_SIDECAR_READY_TIMEOUT_MS,
    stopGraceMs: options.stopGraceMs ?? DEFAULT_SIDECAR_STOP_GRACE_MS,
    client: options.client ?? {},
    random: options.random ?? Math.random,
  };
  for (const key of ['restartBaseMs', 'restartCapMs', 'stableAfterMs', 'readyTimeoutMs', 'stopGraceMs'] as const) {
    if (!Number.isFinite(resolved[key]) || resolved[key] < 0) {
      throw new RangeError(`SidecarSupervisor: ${key} must be a non-negative number, got ${resolved[key]}`);
    }
  }
  return resolved;
}

const SIDECAR_LOG_LINE = /^NODE-([A-Z]+) ([a-z]+) ?(.*)$/;

/** A sidecar stderr line's section and level, when it follows the `NODE-<SECTION> <level> …` form. */
export function parseSidecarLogLine(line: string): { section: Section; level: LogLevel; text: string } | undefined {
  const match = SIDECAR_LOG_LINE.exec(line);
  if (!match) return undefined;
  const section = match[1] as Section;
  const level = match[2] as LogLevel;
  if (!SECTIONS.includes(section) || !LOG_LEVELS.includes(level)) return undefined;
  return { section, level, text: match[3] ?? '' };
}

/** One spawned sidecar process. */
interface SidecarChild {
  readonly process: ChildProcess;
  /** Resolves on READY; rejects when the child exits or cannot start first, or after the ready timeout. */
  readonly ready: Promise<void>;
  /** Resolves, never rejects, with what ended the child: NODE-STATE-730, or NODE-STATE-731 when it never ran. */
  readonly exited: Promise<ConclaveError>;
  /** SIGTERM, SIGKILL after `graceMs`; resolves once it is gone. */
  stop(graceMs: number): Promise<void>;
}

/** A sidecar the supervisor holds: its connection and, when spawned, its process. */
interface Session {
  readonly client: SidecarClient;
  readonly device: SidecarDeviceInfo__Output;
  /** Resolves with why the session ended. */
  readonly ended: Promise<ConclaveError>;
  dispose(): Promise<void>;
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `killed by ${signal}` : `exited with code ${code}`;
}

/**
 * Keeps a Hailo sidecar available to the agent: spawns it (or attaches to the one systemd runs),
 * connects, and after every exit or lost connection tries again with exponential backoff and
 * full jitter. It never throws to its owner: failures are `down` states with their reason, and
 * the agent keeps serving on the CPU meanwhile.
 */
export class SidecarSupervisor {
  readonly options: ResolvedSidecarSupervisorOptions;
  private readonly logger: Logger;
  private readonly listeners = new Set<SidecarListener>();
  private readonly backoff: Backoff;
  private readonly stopController = new AbortController();
  private stateValue: SidecarState = 'starting';
  private changeValue: SidecarChange = {};
  private child: SidecarChild | undefined;
  private loop: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  /** Does nothing until `start()`, so that listeners can be added first and see every transition. */
  constructor(options: SidecarSupervisorOptions) {
    this.options = resolveSidecarSupervisorOptions(options);
    this.logger = this.options.logger.child({ sidecarSocket: this.options.socketPath });
    this.backoff = new Backoff({ baseMs: this.options.restartBaseMs, capMs: this.options.restartCapMs, random: this.options.random });
  }

  /** Starts supervising and returns without waiting for the sidecar (see `whenUp`). A second call does nothing. */
  start(): void {
    if (this.loop || this.stopController.signal.aborted) return;
    this.logger.info('STATE', 'hailo sidecar supervisor started', {
      mode: this.mode, ...(this.options.command ? { command: [...this.options.command] } : {}),
    });
    this.loop = this.run();
  }

  get state(): SidecarState {
    return this.stateValue;
  }

  /** The connection while `up`. */
  get client(): SidecarClient | undefined {
    return this.stateValue === 'up' ? this.changeValue.client : undefined;
  }

  /** The chip's facts while `up`. */
  get device(): SidecarDeviceInfo__Output | undefined {
    return this.stateValue === 'up' ? this.changeValue.device : undefined;
  }

  /** Why the sidecar is down, while `down`. */
  get reason(): ConclaveError | undefined {
    return this.stateValue === 'down' ? this.changeValue.reason : undefined;
  }

  /** The spawned sidecar's pid while one runs. */
  get pid(): number | undefined {
    return this.child?.process.pid;
  }

  get mode(): 'spawn' | 'attach' {
    return this.options.command ? 'spawn' : 'attach';
  }

  /** Calls `listener` on every transition; returns its removal. */
  onChange(listener: SidecarListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves with the connection once `up` (at once when it is); rejects after `timeoutMs`
   * with the last reason it was down, or when the supervisor stops.
   */
  whenUp(timeoutMs: number): Promise<SidecarClient> {
    const client = this.client;
    if (client) return Promise.resolve(client);
    return new Promise((resolve, reject) => {
      let lastReason = this.reason;
      const timer = setTimeout(() => {
        off();
        reject(lastReason ?? new ConclaveError('NODE-NET-630', { detail: `not up after ${timeoutMs} ms` }));
      }, timeoutMs);
      const off = this.onChange((state, change) => {
        if (change.reason) lastReason = change.reason;
        if (state === 'up' && change.client) {
          clearTimeout(timer);
          off();
          resolve(change.client);
        } else if (state === 'stopped') {
          clearTimeout(timer);
          off();
          reject(new ConclaveError('NODE-STATE-730', { detail: 'the supervisor stopped' }));
        }
      });
    });
  }

  /** Closes the connection, stops a spawned sidecar (SIGTERM, then SIGKILL), and never restarts it. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopController.abort(new ConclaveError('NODE-STATE-730', { detail: 'stopped by the agent' }));
      if (this.loop) await this.loop;
      else this.setState('stopped');
    })();
    return this.stopping;
  }

  private setState(next: SidecarState, change: SidecarChange = {}): void {
    const from = this.stateValue;
    if (from === next) return;
    if (!TRANSITIONS[from].includes(next)) {
      throw new Error(`SidecarSupervisor: no transition from ${from} to ${next}`);
    }
    this.stateValue = next;
    this.changeValue = change;
    const meta = {
      from, to: next, mode: this.mode,
      ...(change.device ? { arch: change.device.arch, hailort: change.device.hailortVersion, firmware: change.device.firmwareVersion } : {}),
      ...(change.reason ? { code: change.reason.code, err: change.reason } : {}),
      ...(change.retryInMs !== undefined ? { retryInMs: Math.round(change.retryInMs) } : {}),
    };
    if (next === 'down') this.logger.warn('STATE', 'hailo sidecar state', meta);
    else this.logger.info('STATE', 'hailo sidecar state', meta);
    for (const listener of this.listeners) {
      try {
        listener(next, change);
      } catch (err) {
        this.logger.error('STATE', 'hailo sidecar listener failed', { err });
      }
    }
  }

  private async run(): Promise<void> {
    const signal = this.stopController.signal;
    let first = true;
    while (!signal.aborted) {
      if (!first) this.setState('starting');
      first = false;
      let session: Session | undefined;
      let reason: ConclaveError;
      let upAt: number | undefined;
      try {
        session = await this.startSession(signal);
        upAt = performance.now();
        this.setState('up', { client: session.client, device: session.device });
        reason = await abortable(session.ended, signal);
      } catch (err) {
        if (signal.aborted) {
          await session?.dispose();
          break;
        }
        reason = toConclaveError(err, 'NODE-STATE-731');
      }
      if (upAt !== undefined && performance.now() - upAt >= this.options.stableAfterMs) this.backoff.reset();
      const retryInMs = this.backoff.next();
      this.setState('down', { reason, retryInMs });
      const started = performance.now();
      await session?.dispose();
      try {
        await sleep(Math.max(0, retryInMs - (performance.now() - started)), signal);
      } catch {
        break;
      }
    }
    await this.child?.stop(this.options.stopGraceMs);
    this.setState('stopped');
  }

  private async startSession(signal: AbortSignal): Promise<Session> {
    const command = this.options.command;
    if (!command) return this.attach(signal);
    await this.removeStaleSocket();
    const child = this.spawnChild(command);
    try {
      await abortable(child.ready, signal);
      const { client, device } = await this.connect(signal);
      const ended = new Promise<ConclaveError>((resolve) => {
        void child.exited.then(resolve);
        void client.closed.then((lost) => {
          const timer = setTimeout(() => resolve(lost), EXIT_AFTER_CONNECTION_LOSS_MS);
          void child.exited.then(() => clearTimeout(timer));
        });
      });
      return {
        client, device, ended,
        dispose: async () => {
          await client.close();
          // A sidecar whose connection broke but that still runs is half dead: it goes too.
          await child.stop(this.options.stopGraceMs);
        },
      };
    } catch (err) {
      await child.stop(this.options.stopGraceMs);
      throw err;
    }
  }

  private async attach(signal: AbortSignal): Promise<Session> {
    const { client, device } = await this.connect(signal);
    return { client, device, ended: client.closed, dispose: () => client.close() };
  }

  private async connect(signal: AbortSignal): Promise<{ client: SidecarClient; device: SidecarDeviceInfo__Output }> {
    const client = await abortable(
      SidecarClient.connect(this.options.socketPath, { ...this.options.client, logger: this.logger }),
      signal,
    );
    try {
      const device = await abortable(client.deviceInfo(), signal);
      return { client, device };
    } catch (err) {
      await client.close();
      throw err;
    }
  }

  /**
   * A sidecar killed with -9 leaves its socket file behind. In spawn mode the path is the
   * agent's own, so a socket there is stale; anything else there is left for the sidecar to refuse.
   */
  private async removeStaleSocket(): Promise<void> {
    try {
      const stats = await lstat(this.options.socketPath);
      if (stats.isSocket()) await unlink(this.options.socketPath);
    } catch {
      // Nothing there, or not ours to remove: the sidecar's bind will say which.
    }
  }

  private spawnChild(command: readonly string[]): SidecarChild {
    const [program, ...args] = command as [string, ...string[]];
    // --exit-with-stdin: the sidecar exits when the pipe below closes (the agent gone, kill -9 included).
    const argv = [...args, '--socket', this.options.socketPath, '--exit-with-stdin'];
    const logger = this.logger.child({ sidecar: program });
    const child = spawn(program, argv, {
      // PYTHONUNBUFFERED: READY and the log lines must arrive as written, not when a block fills.
      env: { PYTHONUNBUFFERED: '1', ...process.env, ...this.options.env },
      // stdin is a pipe the agent never writes: it closes when the agent dies however it dies,
      // kill -9 included, and the sidecar exits on that EOF, so it never outlives the agent.
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group: Ctrl-C in the agent's terminal reaches only the agent, which then
      // stops the sidecar once, instead of it dying on the signal and being restarted mid-shutdown.
      detached: true,
    });
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    const tail: string[] = [];
    let spawnError: NodeJS.ErrnoException | undefined;

    const exited = new Promise<ConclaveError>((resolve) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (child.pid !== undefined) {
          logger.warn('STATE', 'hailo sidecar process error', { err });
          return;
        }
        spawnError = err;
        process.off('exit', killOnExit);
        resolve(new ConclaveError('NODE-STATE-731', {
          detail: `cannot run ${program}: ${err.code ?? err.message}`, data: { command: [...command] }, cause: err,
        }));
      });
      child.once('exit', (code, signal) => {
        process.off('exit', killOnExit);
        const done = () => {
          const last = tail.at(-1);
          resolve(new ConclaveError('NODE-STATE-730', {
            detail: `${describeExit(code, signal)}${last ? `; last stderr: ${last}` : ''}`,
            data: { exitCode: code, signal, pid: child.pid, stderrTail: [...tail] },
          }));
        };
        if (child.stderr?.readableEnded || child.stderr?.destroyed) done();
        else {
          const timer = setTimeout(done, STDERR_DRAIN_AFTER_EXIT_MS);
          child.stderr?.once('close', () => {
            clearTimeout(timer);
            done();
          });
        }
      });
    });
    // The agent never writes to it; an EPIPE after the sidecar died is not news.
    child.stdin?.on('error', () => undefined);

    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new ConclaveError('NODE-STATE-731', {
          detail: `${program} did not print ${SIDECAR_READY_LINE} within ${this.options.readyTimeoutMs} ms`,
          data: { command: [...command], stderrTail: [...tail] },
        }));
      }, this.options.readyTimeoutMs);
      void exited.then((reason) => {
        clearTimeout(timer);
        reject(spawnError ? reason : new ConclaveError('NODE-STATE-730', {
          detail: `before ${SIDECAR_READY_LINE}: ${reason.detail ?? reason.message}`, data: reason.data, cause: reason,
        }));
      });
      if (child.stdout) {
        createInterface({ input: child.stdout }).on('line', (line) => {
          if (line.trim() === SIDECAR_READY_LINE) {
            clearTimeout(timer);
            resolve();
          } else {
            logger.debug('STATE', 'hailo sidecar stdout', { line });
          }
        });
      }
    });
    // Nobody may wait on it once the child is up; a later exit must not be an unhandled rejection.
    ready.catch(() => undefined);

    if (child.stderr) {
      createInterface({ input: child.stderr }).on('line', (line) => {
        tail.push(line);
        if (tail.length > STDERR_TAIL_LINES) tail.shift();
        const parsed = parseSidecarLogLine(line);
        if (parsed) logger[parsed.level](parsed.section, 'hailo sidecar', { sidecarLine: parsed.text });
        else logger.warn('STATE', 'hailo sidecar stderr', { sidecarLine: line });
      });
    }

    let gone = false;
    void exited.then(() => {
      gone = true;
      if (this.child === handle) this.child = undefined;
    });
    const handle: SidecarChild = {
      process: child,
      ready,
      exited,
      stop: async (graceMs) => {
        if (!gone) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
          await exited;
          clearTimeout(timer);
        }
      },
    };
    this.child = handle;
    return handle;
  }
}
