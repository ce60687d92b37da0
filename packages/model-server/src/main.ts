#!/usr/bin/env node
// The `model-server` executable: the only module that reads argv, env and signals.
import { Command } from 'commander';
import { createLogger, isConclaveError } from '@conclave/common';
import { configToOptions, loadModelServerConfig } from './model-server-config.js';
import { joinFleet } from './fleet-member.js';
import { startModelServer } from './model-server.js';

/** Exit code for a configuration or model error that a restart will not fix. */
const EXIT_CONFIG = 2;
/** The orchestrator refused this server as a node; an operator must act. */
const EXIT_FLEET = 1;
/** How long a shutdown may take before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 10_000;

const program = new Command('model-server').description('Conclave text model server (OpenAI-compatible HTTP API)');

program
  .command('start')
  .description('load the default model once and serve /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics')
  .option('--model <dir>', 'model directory as HF optimum exports it (default: the embedded demo model)')
  .option('--model-id <id>', 'id served in /v1/models')
  .option('--models-dir <dir>', 'directory whose subdirectories are more models, each loaded on first use (id: the subdirectory name)')
  .option('--port <port>', 'HTTP port (default 7402)')
  .option('--host <host>', 'listen address (default 127.0.0.1)')
  .option('--concurrency <n>', 'generations at once (default 4)')
  .option('--queue-limit <n>', 'requests waiting beyond the concurrency; more get 429 (default 64)')
  .option('--timeout-ms <ms>', 'per-request timeout (default 120000)')
  .option('--while-loading <mode>', 'reject (503) or wait while the model loads (default reject)')
  .option('--api-key-file <path>', 'file with one API key per line (also CONCLAVE_MODEL_API_KEYS)')
  .option('--threads <n>', 'onnxruntime intra-op threads (default 1)')
  .option('--memory-soft <fraction>', 'refuse new requests above this memory fraction (default 0.9)')
  .option('--memory-hard <fraction>', 'emergency recovery above this memory fraction (default 0.95)')
  .option('--memory-margin-mb <mb>', 'memory that must stay free (default 256)')
  .option('--log-level <level>', 'error | warn | info | debug (default info)')
  .option('--log-dir <dir>', 'also write rotated JSON log files here')
  .option('--orchestrator <host:port>', 'also join this orchestrator as a text-generation node')
  .option('--join <join string>', 'join string from `orchestrator token create` (first start only)')
  .option('--data-dir <dir>', 'node identity and outbox when joining an orchestrator (default .conclave/model-server)')
  .option('--config <file>', 'YAML file with the same keys (lowest precedence)')
  .action(async (flags: Record<string, string | undefined>) => {
    const { model, modelId, config: file, join, ...rest } = flags;
    let exitCode = 0;
    try {
      const config = loadModelServerConfig({
        flags: { ...rest, dir: model, id: modelId },
        env: process.env,
        ...(file ? { file } : {}),
      });
      const { logLevel, ...options } = configToOptions(config);
      const { orchestrator, dataDir } = config;
      const logger = createLogger({ prefix: 'MODEL', level: logLevel, ...(config.logDir ? { file: { dir: config.logDir } } : {}) });
      const server = await startModelServer({ ...options, logger });
      let member: Awaited<ReturnType<typeof joinFleet>> | undefined;
      if (orchestrator) {
        try {
          member = await joinFleet({
            server, orchestrator, dataDir, slots: config.concurrency, ...(join ? { join } : {}),
            logger: createLogger({ prefix: 'NODE', level: logLevel, ...(config.logDir ? { file: { dir: config.logDir } } : {}) }),
          });
        } catch (err) {
          // Asked to join and cannot (no join string yet, unreadable data dir): serving HTTP
          // alone would hide it, so the whole server stops.
          await server.close();
          await logger.close();
          throw err;
        }
      }
      server.ready.catch(() => {
        // The load error is logged with its code; a model that cannot load will not load on retry.
        process.exitCode = EXIT_CONFIG;
        void server.close().then(() => logger.close());
      });
      const ended = await Promise.race([
        new Promise<{ signal: NodeJS.Signals }>((resolve) => {
          process.once('SIGINT', (signal) => resolve({ signal }));
          process.once('SIGTERM', (signal) => resolve({ signal }));
        }),
        ...(member ? [member.fatal.then((error) => ({ error }))] : []),
      ]);
      if ('error' in ended) {
        // Refused by the orchestrator (revoked, denied, wrong key): already logged with its code.
        process.stderr.write(`model-server: ${ended.error.code} ${ended.error.message}\n  recovery: ${ended.error.entry.recovery}\n`);
        process.exitCode = EXIT_FLEET;
        await member?.close();
        await server.close();
        await logger.close();
        return;
      }
      const { signal } = ended;
      logger.info('CLEAN', 'shutdown requested', { signal });
      setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS).unref();
      await member?.close();
      await server.close();
      await logger.close();
    } catch (err) {
      exitCode = EXIT_CONFIG;
      const message = isConclaveError(err) ? `${err.code} ${err.message}\n  recovery: ${err.entry.recovery}` : String(err);
      process.stderr.write(`model-server: ${message}\n`);
    }
    process.exitCode ||= exitCode;
  });

await program.parseAsync(process.argv);
