import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  ConclaveError,
  acquireDataDirLock,
  ensurePrivateDir,
  whileHoldingDataDir,
  createLogger,
  LogTap,
  runService,
  type ClosableLogger,
  type DataDirLock,
  type Logger,
  type LoggerOptions,
  type ReadinessOf,
  type TextOut,
} from '@conclave/common';
import { onFirstConnection } from '../first-connection.js';
import type { NodeAgentOptions } from '../node-agent-options.js';
import type { NodeAgentConfig } from './start-config.js';

export type { TextOut } from '@conclave/common';

/** What the CLI passes `startNodeAgent`: the knobs of its configuration (the type only: no runtime is loaded). */
export type StartNodeAgentOptions = Pick<
  NodeAgentOptions,
  'orchestrator' | 'join' | 'dataDir' | 'name' | 'slots' | 'httpHost' | 'httpPort' | 'logger' | 'tls' | 'tlsCa' | 'logTap' | 'logSpoolMaxBytes'
  | 'backendKind' | 'hailoSocket' | 'hailoSidecarCommand' | 'detectionRoot'
>;

export interface StartedNodeAgent {
  nodeId: string;
  /** Of its local `/healthz` and `/metrics`; -1 when off. */
  httpPort: number;
  /** Its session with the orchestrator is up: the first time, the agent is ready. */
  readonly connected: boolean;
  /** Settles when the agent gives up on an authentication failure (revoked, denied, wrong orchestrator key…). */
  fatal?: Promise<Error>;
  close(): Promise<void>;
}

export interface NodeAgentStartDeps {
  startNodeAgent(options: StartNodeAgentOptions): Promise<StartedNodeAgent>;
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

function lockNodeDataDir(dataDir: string): Promise<DataDirLock> {
  return acquireDataDirLock({ dir: dataDir, role: 'node-agent', errorCode: 'NODE-STATE-704', unusableCode: 'NODE-STATE-701' });
}

/**
 * `node-agent start`: runs until a shutdown request, then closes cleanly (runService).
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

/** The default logger: its files go under `logs/`, made 0700 first (tightened if an older version made it 0755). */
async function createNodeLogger(options: LoggerOptions): Promise<ClosableLogger> {
  if (options.file) await ensurePrivateDir(options.file.dir);
  return createLogger(options);
}

async function runLocked(config: NodeAgentConfig, dataDir: string, deps: NodeAgentStartDeps): Promise<number> {
  // Made with the logger, so that the lines of the start-up (before the agent knows its node id
  // and can ship) are kept for shipping too.
  const tap = new LogTap(config.logShipLevel);
  const loggerOptions: LoggerOptions = {
    prefix: 'NODE',
    level: config.logLevel,
    console: true,
    file: { dir: join(dataDir, 'logs') },
    tap,
  };
  const logger = deps.createLogger ? deps.createLogger(loggerOptions) : await createNodeLogger(loggerOptions);
  try {
    const options = {
      ...toNodeAgentOptions(config, dataDir, logger, config.joinFile !== undefined ? await readJoinFile(config.joinFile) : undefined),
      logTap: tap,
    };
    return await runService({
      start: async () => {
        const agent = await deps.startNodeAgent(options);
        // Ready once its first session is up (enrolled, approved, registered): it can take jobs.
        let stopWatching: () => void = () => undefined;
        const ready = new Promise<ReadinessOf<'node-agent'>>((resolve) => {
          stopWatching = onFirstConnection(agent, () =>
            resolve({ role: 'node-agent', node: agent.nodeId, httpPort: agent.httpPort >= 0 ? agent.httpPort : null }),
          );
        });
        return {
          nodeId: agent.nodeId,
          ready,
          ...(agent.fatal ? { fatal: agent.fatal } : {}),
          close: () => {
            stopWatching();
            return agent.close();
          },
        };
      },
      shutdownRequested: () => deps.shutdownSignal,
      logger,
      stdout: deps.stdout,
      stderr: deps.stderr,
      fallbackCode: 'NODE-STATE-707',
      logMeta: (agent) => ({ node: agent.nodeId }),
      stoppedMessage: 'node agent stopped',
    });
  } finally {
    await logger.close();
  }
}

/**
 * Reads `--join-file`. An empty file is no join string (a node that has joined keeps starting
 * with the same unit); a missing or unreadable one is NODE-STATE-703, exit 2.
 */
async function readJoinFile(path: string): Promise<string | undefined> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    return text === '' ? undefined : text;
  } catch (err) {
    throw new ConclaveError('NODE-STATE-703', { detail: `joinFile (--join-file, env CONCLAVE_JOIN_FILE) ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, cause: err });
  }
}

/** `joinFromFile` is the contents of `joinFile`; --join (or CONCLAVE_JOIN) wins over it. */
export function toNodeAgentOptions(config: NodeAgentConfig, dataDir: string, logger: Logger, joinFromFile?: string): StartNodeAgentOptions {
  const joinString = config.join ?? joinFromFile;
  return {
    ...(config.orchestrator !== undefined ? { orchestrator: config.orchestrator } : {}),
    ...(joinString !== undefined ? { join: joinString } : {}),
    ...(config.tls ? { tls: true } : {}),
    ...(config.tlsCa !== undefined ? { tlsCa: resolve(config.tlsCa) } : {}),
    dataDir,
    ...(config.name !== undefined ? { name: config.name } : {}),
    ...(config.slots !== undefined ? { slots: config.slots } : {}),
    ...(config.httpHost !== undefined ? { httpHost: config.httpHost } : {}),
    httpPort: config.httpPort,
    logger,
    logSpoolMaxBytes: config.logSpoolMaxBytes,
    backendKind: config.backend,
    ...(config.hailoSocket !== undefined ? { hailoSocket: resolve(config.hailoSocket) } : {}),
    ...(config.hailoSidecarCommand !== undefined ? { hailoSidecarCommand: config.hailoSidecarCommand.split(/\s+/) } : {}),
    detectionRoot: resolve(config.detectionRoot),
  };
}
