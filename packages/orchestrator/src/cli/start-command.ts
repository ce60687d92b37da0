import { join, resolve } from 'node:path';
import {
  acquireDataDirLock,
  whileHoldingDataDir,
  LogTap,
  createLogger,
  runService,
  type ClosableLogger,
  type DataDirLock,
  type Logger,
  type LoggerOptions,
  type ReadinessOf,
} from '@conclave/common';
import type { OrchestratorHandle } from '../orchestrator.js';
import type { OrchestratorOptions } from '../orchestrator-options.js';
import type { TextOut } from './cli-io.js';
import type { StartConfig } from './config-schemas.js';

/** What the CLI needs of a started orchestrator (tests fake it): its readiness line and its close. */
export type StartedOrchestrator = Pick<OrchestratorHandle, 'address' | 'httpPort' | 'fingerprint' | 'close'>;

export interface StartDeps {
  startOrchestrator(options: OrchestratorOptions): Promise<StartedOrchestrator>;
  /** Resolves with the reason on the first shutdown request: a signal, or the parent gone (main.ts wires the process). */
  shutdownSignal: Promise<string>;
  /** Where the readiness line goes. */
  stdout: TextOut;
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
 * `orchestrator start`: runs until a shutdown request, then closes cleanly (runService).
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
  // The fleet log store reads the orchestrator's own records at the console's level.
  const logTap = new LogTap(config.logLevel);
  const logger = (deps.createLogger ?? createLogger)({
    prefix: 'ORCH',
    level: config.logLevel,
    console: true,
    file: { dir: join(dataDir, 'logs') },
    tap: logTap,
  });
  try {
    const options = { ...toOrchestratorOptions(config, dataDir, logger), logTap };
    return await runService({
      start: async () => {
        const handle = await deps.startOrchestrator(options);
        // Resolved means gRPC and HTTP are listening and Redis has answered: ready, as /readyz says.
        const readiness: ReadinessOf<'orchestrator'> = {
          role: 'orchestrator', grpc: handle.address, httpPort: handle.httpPort >= 0 ? handle.httpPort : null,
          tls: options.tls !== undefined, fingerprint: handle.fingerprint,
        };
        return { ready: Promise.resolve(readiness), close: () => handle.close() };
      },
      shutdownRequested: () => deps.shutdownSignal,
      logger,
      stdout: deps.stdout,
      stderr: deps.stderr,
      fallbackCode: 'ORCH-STATE-707',
    });
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
    maxSlotsPerNode: config.maxSlotsPerNode,
    insecureControl: config.insecureControl,
    modelTransferStallMs: config.modelTransferStallMs,
    chat: {
      maxMessageBytes: config.chatMaxMessageBytes, logMaxLen: config.chatLogMaxLen,
      contextMessages: config.chatContextMessages, contextTokens: config.chatContextTokens,
    },
    logs: { maxRecords: config.logMaxRecords, maxAgeMs: config.logMaxAge, nodeRatePerSecond: config.logNodeRate },
    approval: config.approval,
    ...(advertiseAddress !== undefined ? { advertiseAddress } : {}),
    ...(tlsCert !== undefined && tlsKey !== undefined ? { tls: { certPath: resolve(tlsCert), keyPath: resolve(tlsKey) } } : {}),
    defaultTokenTtlMs: config.tokenTtl,
    ...(operatorToken !== undefined ? { operatorToken } : {}),
  };
}
