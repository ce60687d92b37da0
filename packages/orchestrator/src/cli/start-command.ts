import { join, resolve } from 'node:path';
import {
  acquireDataDirLock,
  whileHoldingDataDir,
  createLogger,
  type ClosableLogger,
  type DataDirLock,
  type Logger,
  type LoggerOptions,
} from '@conclave/common';
import type { OrchestratorHandle } from '../orchestrator.js';
import type { OrchestratorOptions } from '../orchestrator-options.js';
import type { TextOut } from './cli-io.js';
import { describeFailure } from './cli-failure.js';
import type { StartConfig } from './config-schemas.js';
import { EXIT_FAILURE, EXIT_OK } from './exit-codes.js';

/** What the CLI needs of a started orchestrator (tests fake it). */
export type StartedOrchestrator = Pick<OrchestratorHandle, 'grpcPort' | 'httpPort' | 'redisUrl' | 'close'>;

export interface StartDeps {
  startOrchestrator(options: OrchestratorOptions): Promise<StartedOrchestrator>;
  /** Resolves with the signal name on the first SIGINT/SIGTERM (main.ts wires the process). */
  shutdownSignal: Promise<string>;
  /** Where the one-line startup failure goes. */
  stderr: TextOut;
  /** @default createLogger from @conclave/common */
  createLogger?: (options: LoggerOptions) => ClosableLogger;
  /** Holds the data dir for the process's lifetime. @default acquireDataDirLock (tests pass their own) */
  lockDataDir?: (dataDir: string) => Promise<Pick<DataDirLock, 'release'>>;
}

function lockOrchestratorDataDir(dataDir: string): Promise<DataDirLock> {
  return acquireDataDirLock({ dir: dataDir, role: 'orchestrator', errorCode: 'ORCH-STATE-704', unusableCode: 'ORCH-STATE-706' });
}

/**
 * `orchestrator start`: runs until a signal, then closes cleanly.
 * Resolves with the exit code: 0 after a clean close; 2 when startup failed on bad input (a TLS
 * file that is no PEM), 1 when it failed otherwise or the close failed.
 */
export async function runOrchestratorStart(config: StartConfig, deps: StartDeps): Promise<number> {
  const dataDir = resolve(config.dataDir);
  // Before the logger, which writes under the data dir: a dir that is a file or read-only, or one
  // that a running orchestrator holds, is one coded line and not a log-file stack trace.
  return whileHoldingDataDir(
    () => (deps.lockDataDir ?? lockOrchestratorDataDir)(dataDir),
    { stderr: deps.stderr, fallbackCode: 'ORCH-STATE-707' },
    () => runLocked(config, dataDir, deps),
  );
}

async function runLocked(config: StartConfig, dataDir: string, deps: StartDeps): Promise<number> {
  const logger = (deps.createLogger ?? createLogger)({
    prefix: 'ORCH',
    level: config.logLevel,
    console: true,
    file: { dir: join(dataDir, 'logs') },
  });
  try {
    let handle: StartedOrchestrator;
    try {
      handle = await deps.startOrchestrator(toOrchestratorOptions(config, dataDir, logger));
    } catch (err) {
      // Not logged as well: the console would show the same failure twice.
      const failure = describeFailure(err);
      deps.stderr.write(`${failure.line}\n`);
      return failure.exitCode;
    }
    const signal = await deps.shutdownSignal;
    logger.info('CLEAN', 'shutting down', { signal });
    try {
      await handle.close();
    } catch (err) {
      logger.failure(err, { section: 'CLEAN' });
      return EXIT_FAILURE;
    }
    return EXIT_OK;
  } finally {
    await logger.close();
  }
}

export function toOrchestratorOptions(config: StartConfig, dataDir: string, logger: Logger): OrchestratorOptions {
  const { redisUrl, advertiseAddress, tlsCert, tlsKey, operatorToken } = config;
  // These have no default before start (OrchestratorOptions says how each is found): absent stays absent.
  return {
    ...(redisUrl !== undefined ? { redisUrl } : {}),
    grpcHost: config.grpcHost,
    grpcPort: config.grpcPort,
    httpHost: config.httpHost,
    httpPort: config.httpPort,
    dataDir,
    logger,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    resultTtlSeconds: config.resultTtlSeconds,
    defaultJobTimeoutMs: config.defaultJobTimeoutMs,
    maxQueuedJobs: config.maxQueuedJobs,
    jobAttempts: config.jobAttempts,
    approval: config.approval,
    ...(advertiseAddress !== undefined ? { advertiseAddress } : {}),
    ...(tlsCert !== undefined && tlsKey !== undefined ? { tls: { certPath: resolve(tlsCert), keyPath: resolve(tlsKey) } } : {}),
    defaultTokenTtlMs: config.tokenTtl,
    ...(operatorToken !== undefined ? { operatorToken } : {}),
  };
}
