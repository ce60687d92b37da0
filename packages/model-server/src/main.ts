#!/usr/bin/env node
// The `model-server` executable: the only module that reads argv, env and signals.
import { Command, CommanderError } from 'commander';
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  acquireDataDirLock,
  createLogger,
  describeStartupFailure,
  describeUsageError,
  formatReadinessLine,
  isConclaveError,
  onOutputGone,
  parentGone,
  shutdownSignal,
  type DataDirLock,
} from '@conclave/common';
import { onFirstConnection } from '@conclave/node-agent';
import { configToOptions, loadModelServerConfig, modelServerConfigSchema } from './model-server-config.js';
import { joinFleet } from './fleet-member.js';
import { startModelServer } from './model-server.js';

/** How long a shutdown may take before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 10_000;

/** The defaults `--help` shows are the schema's own, so that the two cannot drift apart. */
const DEFAULTS = modelServerConfigSchema.parse({});

// A closed terminal or pipe must not crash a running server; SIGHUP shuts it down in order.
onOutputGone([process.stdout, process.stderr], () => undefined);

const fail = (line: string, exitCode: number): number => {
  process.stderr.write(`${line}\n`);
  return exitCode;
};

const program = new Command('model-server')
  .description('Conclave text model server (OpenAI-compatible HTTP API)')
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
  .option('--join <join string>', 'join string from `orchestrator token create` (first start only; empty: serve HTTP without joining until there is one)')
  .option('--data-dir <dir>', `node identity and outbox when joining an orchestrator (default ${DEFAULTS.dataDir})`)
  .option('--config <file>', 'YAML file with the same keys (lowest precedence)')
  .action(async (flags: Record<string, string | undefined>) => {
    process.exitCode = await runStart(flags);
  });

/** `model-server start`: serves until a signal; resolves with the exit code. */
async function runStart(flags: Record<string, string | undefined>): Promise<number> {
  const { model, modelId, config: file, join, ...rest } = flags;
  let lock: DataDirLock | undefined;
  try {
    const config = loadModelServerConfig({ flags: { ...rest, dir: model, id: modelId }, env: process.env, ...(file ? { file } : {}) });
    const { logLevel, ...options } = configToOptions(config);
    const { orchestrator, dataDir } = config;
    // The data dir holds a node identity only when the server joins a fleet: one process each.
    if (orchestrator) {
      lock = await acquireDataDirLock({ dir: dataDir, role: 'model-server', errorCode: 'MODEL-STATE-704', unusableCode: 'MODEL-STATE-706' });
    }
    const fileLog = config.logDir ? { file: { dir: config.logDir } } : {};
    const logger = createLogger({ prefix: 'MODEL', level: logLevel, ...fileLog });
    const nodeLogger = createLogger({ prefix: 'NODE', level: logLevel, ...fileLog });
    const closeLoggers = () => Promise.all([logger.close(), nodeLogger.close()]);
    let server: Awaited<ReturnType<typeof startModelServer>>;
    try {
      server = await startModelServer({ ...options, logger });
    } catch (err) {
      await closeLoggers();
      throw err;
    }
    let member: Awaited<ReturnType<typeof joinFleet>> | undefined;
    if (orchestrator) {
      try {
        member = await joinFleet({ server, orchestrator, dataDir, slots: config.concurrency, ...(join ? { join } : {}), logger: nodeLogger });
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
          await closeLoggers();
          throw err;
        }
      }
    }
    // Ready: listening (above), the default model loaded and warmed up, and, when it joined a
    // fleet, its first session up. A model that cannot load ends the process below instead.
    let announce = true;
    let stopWatching: () => void = () => undefined;
    const fleetMember = member;
    const firstSession = fleetMember && new Promise<void>((resolve) => {
      stopWatching = onFirstConnection(fleetMember, resolve);
    });
    void Promise.all([server.ready, firstSession]).then(() => {
      if (!announce) return;
      process.stdout.write(formatReadinessLine({ role: 'model-server', url: server.url, model: server.modelId, node: fleetMember?.nodeId ?? null }));
    }, () => undefined);
    const ended = await Promise.race([
      server.ready.then(
        () => new Promise<never>(() => undefined),
        (error: unknown) => ({ loadFailed: error }),
      ),
      shutdownSignal().then((signal) => ({ signal })),
      parentGone().then((signal) => ({ signal })),
      ...(member ? [member.fatal.then((error) => ({ error }))] : []),
    ]);
    announce = false;
    stopWatching();
    setTimeout(() => process.exit(EXIT_FAILURE), SHUTDOWN_GRACE_MS).unref();
    let exitCode = EXIT_OK;
    if ('loadFailed' in ended) {
      // Logged with its code when it happened; a model that cannot load will not load on retry.
      exitCode = EXIT_USAGE;
    } else if ('error' in ended) {
      // Refused by the orchestrator (revoked, denied, wrong key): already logged with its code.
      process.stderr.write(`${describeStartupFailure(ended.error, 'MODEL-STATE-707').line}\n`);
      exitCode = EXIT_FAILURE;
    } else {
      logger.info('CLEAN', 'shutting down', { signal: ended.signal });
    }
    await member?.close();
    await server.close();
    if (exitCode === EXIT_OK) logger.info('CLEAN', 'model server stopped');
    await closeLoggers();
    return exitCode;
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
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') process.exitCode = EXIT_OK;
    // `model-server` alone: commander has printed the help to stderr.
    else if (err.code === 'commander.help') process.exitCode = EXIT_USAGE;
    else {
      const usage = describeUsageError(err.message, 'MODEL-STATE-705');
      process.exitCode = fail(usage.line, usage.exitCode);
    }
  } else {
    const failure = describeStartupFailure(err, 'MODEL-STATE-707');
    process.exitCode = fail(failure.line, failure.exitCode);
  }
}
