#!/usr/bin/env node
// The `model-server` executable: the only module that reads argv, env and signals.
import { readFile } from 'node:fs/promises';
import { Command, CommanderError } from 'commander';
import {
  EXIT_OK,
  EXIT_USAGE,
  acquireDataDirLock,
  LogTap,
  createLogger,
  describeStartupFailure,
  describeUsageError,
  exitWhenIdle,
  isConclaveError,
  onOutputGone,
  runService,
  shutdownRequested,
  type DataDirLock,
  type ReadinessOf,
} from '@conclave/common';
import { NODE_AGENT_DEFAULTS, onFirstConnection } from '@conclave/node-agent';
import { configToOptions, loadModelServerConfig, modelServerConfigSchema } from './model-server-config.js';
import { joinFleet } from './fleet-member.js';
import { MODEL_SERVER_JOIN_ENV } from './launch.js';
import { startModelServer } from './model-server.js';
import { MODEL_SERVER_VERSION } from './version.js';

/** The defaults `--help` shows are the schema's own, so that the two cannot drift apart. */
const DEFAULTS = modelServerConfigSchema.parse({});

// A closed terminal or pipe must not crash a running server; SIGHUP shuts it down in order.
onOutputGone([process.stdout, process.stderr], () => undefined);

const fail = (line: string, exitCode: number): number => {
  process.stderr.write(`${line}\n`);
  return exitCode;
};

let exitCode = EXIT_OK;
const program = new Command('model-server')
  .description('Conclave text model server (OpenAI-compatible HTTP API)')
  .version(MODEL_SERVER_VERSION, '--version', 'print the version and exit')
  .exitOverride()
  // Parse errors are printed below, as one coded line.
  .configureOutput({ outputError: () => undefined });

program
  .command('start')
  .description('load the default model once and serve /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics')
  .option('--model <dir>', 'model directory as HF optimum exports it (default: the embedded demo model)')
  .option('--model-id <id>', 'id served in /v1/models (default: the directory name)')
  .option('--models-dir <dir>', 'directory whose subdirectories are more models, each loaded on first use (id: the subdirectory name)')
  .option('--port <port>', `HTTP port, 0 = any free port (default ${DEFAULTS.port})`)
  .option('--host <host>', `listen address (default ${DEFAULTS.host})`)
  .option('--concurrency <n>', `generations at once (default ${DEFAULTS.concurrency})`)
  .option('--queue-limit <n>', `requests waiting beyond the concurrency; more get 429 (default ${DEFAULTS.queueLimit})`)
  .option('--timeout-ms <ms>', `per-request timeout (default ${DEFAULTS.timeoutMs})`)
  .option('--keep-alive-timeout-ms <ms>', `idle keep-alive connections close after this (default ${DEFAULTS.keepAliveTimeoutMs})`)
  .option('--headers-timeout-ms <ms>', `longest wait for a request's headers (default ${DEFAULTS.headersTimeoutMs})`)
  .option('--while-loading <mode>', `reject (503) or wait while the model loads (default ${DEFAULTS.whileLoading})`)
  .option('--api-key-file <path>', 'file with one API key per line (also CONCLAVE_MODEL_API_KEYS)')
  .option('--threads <n>', `onnxruntime intra-op threads (default ${DEFAULTS.threads})`)
  .option('--memory-soft <fraction>', `refuse new requests above this memory fraction (default ${DEFAULTS.memorySoft})`)
  .option('--memory-hard <fraction>', `emergency recovery above this memory fraction (default ${DEFAULTS.memoryHard})`)
  .option('--memory-margin-mb <mb>', `memory that must stay free (default ${DEFAULTS.memoryMarginMb})`)
  .option('--log-level <level>', `error | warn | info | debug (default ${DEFAULTS.logLevel})`)
  .option('--log-dir <dir>', 'also write rotated JSON log files here')
  .option('--orchestrator <host:port>', 'also join this orchestrator as a text-generation node')
  .option('--join <join string>', 'join string from `orchestrator token create` (first start only; empty: serve HTTP without joining until there is one); better CONCLAVE_JOIN or --join-file, which `ps` does not show')
  .option('--join-file <path>', 'read the join string from this file (env CONCLAVE_JOIN_FILE)')
  .option('--data-dir <dir>', `node identity and outbox when joining an orchestrator (default ${DEFAULTS.dataDir})`)
  .option('--config <file>', 'YAML file with the same keys (lowest precedence)')
  .action(async (flags: Record<string, string | undefined>) => {
    exitCode = await runStart(flags);
  });

/** `model-server start`: serves until a shutdown request (runService); resolves with the exit code. */
async function runStart(flags: Record<string, string | undefined>): Promise<number> {
  const { model, modelId, config: file, join: joinFlag, joinFile, ...rest } = flags;
  let lock: DataDirLock | undefined;
  try {
    const config = loadModelServerConfig({ flags: { ...rest, dir: model, id: modelId }, env: process.env, ...(file ? { file } : {}) });
    const { logLevel, ...options } = configToOptions(config);
    const { orchestrator, dataDir } = config;
    const join = await joinStringOf(joinFlag, joinFile);
    // The data dir holds a node identity only when the server joins a fleet: one process each.
    if (orchestrator) {
      lock = await acquireDataDirLock({ dir: dataDir, role: 'model-server', errorCode: 'MODEL-STATE-704', unusableCode: 'MODEL-STATE-706' });
    }
    const fileLog = config.logDir ? { file: { dir: config.logDir } } : {};
    // In a fleet, the server's MODEL- records and its membership's NODE- records reach the
    // orchestrator through the embedded node agent's shipping: one tap for both loggers.
    const logTap = orchestrator ? new LogTap(NODE_AGENT_DEFAULTS.logShipLevel) : undefined;
    const tap = logTap ? { tap: logTap } : {};
    const logger = createLogger({ prefix: 'MODEL', level: logLevel, ...fileLog, ...tap });
    const nodeLogger = createLogger({ prefix: 'NODE', level: logLevel, ...fileLog, ...tap });
    try {
      return await runService({
        start: async () => {
          const server = await startModelServer({ ...options, logger });
          let member: Awaited<ReturnType<typeof joinFleet>> | undefined;
          if (orchestrator) {
            try {
              member = await joinFleet({
                server, orchestrator, dataDir, slots: config.concurrency, ...(join ? { join } : {}), logger: nodeLogger, ...(logTap ? { logTap } : {}),
              });
            } catch (err) {
              if (isConclaveError(err) && err.code === 'NODE-STATE-702') {
                // Never joined and no join string yet (compose and Kubernetes start it that way before
                // an operator has one): serve HTTP alone and say how to join.
                nodeLogger.failure(err, { orchestrator }, 'warn');
                logger.warn('STATE', 'serving HTTP without joining the fleet until started with a join string', { orchestrator });
              } else {
                // Asked to join and cannot (unreadable data dir, malformed join string): serving HTTP
                // alone would hide it, so the whole server stops.
                await server.close();
                throw err;
              }
            }
          }
          // Ready: listening (above), the default model loaded and warmed up, and, when it joined a
          // fleet, its first session up. A model that cannot load rejects `ready` instead (logged with
          // its code when it happened; it will not load on retry).
          let stopWatching: () => void = () => undefined;
          const fleetMember = member;
          const firstSession = fleetMember && new Promise<void>((resolve) => {
            stopWatching = onFirstConnection(fleetMember, resolve);
          });
          const ready = Promise.all([server.ready, firstSession]).then((): ReadinessOf<'model-server'> => (
            { role: 'model-server', url: server.url, model: server.modelId, node: fleetMember?.nodeId ?? null }
          ));
          return {
            ready,
            // Refused by the orchestrator (revoked, denied, wrong key): already logged with its code.
            ...(fleetMember ? { fatal: fleetMember.fatal } : {}),
            close: async () => {
              stopWatching();
              await fleetMember?.close();
              await server.close();
            },
          };
        },
        shutdownRequested: () => shutdownRequested(),
        logger,
        stdout: process.stdout,
        stderr: process.stderr,
        fallbackCode: 'MODEL-STATE-707',
        stoppedMessage: 'model server stopped',
      });
    } finally {
      await Promise.all([logger.close(), nodeLogger.close()]);
    }
  } catch (err) {
    const failure = describeStartupFailure(err, 'MODEL-STATE-707');
    return fail(failure.line, failure.exitCode);
  } finally {
    await lock?.release();
  }
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') exitCode = EXIT_OK;
    // `model-server` alone: commander has printed the help to stderr.
    else if (err.code === 'commander.help') exitCode = EXIT_USAGE;
    else {
      const usage = describeUsageError(err.message, 'MODEL-STATE-705');
      exitCode = fail(usage.line, usage.exitCode);
    }
  } else {
    const failure = describeStartupFailure(err, 'MODEL-STATE-707');
    exitCode = fail(failure.line, failure.exitCode);
  }
}
exitWhenIdle(exitCode);

/**
 * The join string: --join, else CONCLAVE_JOIN, else the file --join-file (or CONCLAVE_JOIN_FILE)
 * names. Empty means none (compose passes an empty variable before an operator has one).
 */
async function joinStringOf(flag: string | undefined, file: string | undefined): Promise<string | undefined> {
  const path = file ?? process.env.CONCLAVE_JOIN_FILE;
  const given = flag ?? process.env[MODEL_SERVER_JOIN_ENV] ?? (path ? (await readFile(path, 'utf8')).trim() : undefined);
  return given ? given : undefined;
}
