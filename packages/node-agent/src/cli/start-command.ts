import { join, resolve } from 'node:path';
import {
  EXIT_FAILURE,
  EXIT_OK,
  acquireDataDirLock,
  whileHoldingDataDir,
  createLogger,
  describeStartupFailure,
  type ClosableLogger,
  type DataDirLock,
  type Logger,
  type LoggerOptions,
} from '@conclave/common';
import type { NodeAgentConfig } from './start-config.js';

/** What `startNodeAgent` takes and returns, as far as the CLI needs it (node-agent.ts has the full types). */
export interface StartNodeAgentOptions {
  orchestrator?: string;
  join?: string;
  dataDir: string;
  name?: string;
  slots?: number;
  httpHost?: string;
  httpPort?: number;
  logger: Logger;
}

export interface StartedNodeAgent {
  nodeId: string;
  /** Settles when the agent gives up on an authentication failure (revoked, denied, wrong orchestrator key…). */
  fatal?: Promise<Error>;
  close(): Promise<void>;
}

export interface TextOut {
  write(chunk: string): unknown;
}

export interface NodeAgentStartDeps {
  startNodeAgent(options: StartNodeAgentOptions): Promise<StartedNodeAgent>;
  /** Resolves with the signal name on the first SIGINT/SIGTERM (main.ts wires the process). */
  shutdownSignal: Promise<string>;
  /** Where the one-line startup failure goes. */
  stderr: TextOut;
  /** @default createLogger from @conclave/common */
  createLogger?: (options: LoggerOptions) => ClosableLogger;
  /** Holds the data dir for the process's lifetime. @default acquireDataDirLock (tests pass their own) */
  lockDataDir?: (dataDir: string) => Promise<Pick<DataDirLock, 'release'>>;
}

function lockNodeDataDir(dataDir: string): Promise<DataDirLock> {
  return acquireDataDirLock({ dir: dataDir, role: 'node-agent', errorCode: 'NODE-STATE-704', unusableCode: 'NODE-STATE-701' });
}

/**
 * `node-agent start`: runs until a signal, then closes cleanly.
 * Resolves with the exit code: 0 after a clean close; 2 when startup failed on bad input (a
 * malformed join string), 1 when it failed otherwise or the close failed.
 */
export async function runNodeAgentStart(config: NodeAgentConfig, deps: NodeAgentStartDeps): Promise<number> {
  const dataDir = resolve(config.dataDir);
  // Before the logger, which writes under the data dir: a dir that is a file or read-only, or one
  // that another agent holds (one identity, one process), is one coded line.
  return whileHoldingDataDir(
    () => (deps.lockDataDir ?? lockNodeDataDir)(dataDir),
    { stderr: deps.stderr, fallbackCode: 'NODE-STATE-707' },
    () => runLocked(config, dataDir, deps),
  );
}

async function runLocked(config: NodeAgentConfig, dataDir: string, deps: NodeAgentStartDeps): Promise<number> {
  const logger = (deps.createLogger ?? createLogger)({
    prefix: 'NODE',
    level: config.logLevel,
    console: true,
    file: { dir: join(dataDir, 'logs') },
  });
  try {
    let agent: StartedNodeAgent;
    try {
      agent = await deps.startNodeAgent(toNodeAgentOptions(config, dataDir, logger));
    } catch (err) {
      // Not logged as well: the console would show the same failure twice.
      const failure = describeStartupFailure(err, 'NODE-STATE-707');
      deps.stderr.write(`${failure.line}\n`);
      return failure.exitCode;
    }
    const ended = await Promise.race([
      deps.shutdownSignal.then((signal) => ({ signal })),
      ...(agent.fatal ? [agent.fatal.then((error) => ({ error }))] : []),
    ]);
    if ('error' in ended) {
      // Already logged with its code; an operator must act (approve, re-enroll, check the pin).
      deps.stderr.write(`${describeStartupFailure(ended.error, 'NODE-STATE-707').line}\n`);
      await agent.close().catch(() => undefined);
      return EXIT_FAILURE;
    }
    const signal = ended.signal;
    logger.info('CLEAN', 'shutting down', { signal, node: agent.nodeId });
    try {
      await agent.close();
    } catch (err) {
      logger.failure(err, { section: 'CLEAN' });
      return EXIT_FAILURE;
    }
    logger.info('CLEAN', 'node agent stopped', { node: agent.nodeId });
    return EXIT_OK;
  } finally {
    await logger.close();
  }
}

export function toNodeAgentOptions(config: NodeAgentConfig, dataDir: string, logger: Logger): StartNodeAgentOptions {
  return {
    ...(config.orchestrator !== undefined ? { orchestrator: config.orchestrator } : {}),
    ...(config.join !== undefined ? { join: config.join } : {}),
    dataDir,
    ...(config.name !== undefined ? { name: config.name } : {}),
    ...(config.slots !== undefined ? { slots: config.slots } : {}),
    ...(config.httpHost !== undefined ? { httpHost: config.httpHost } : {}),
    httpPort: config.httpPort,
    logger,
  };
}
