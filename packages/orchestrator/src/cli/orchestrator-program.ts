import { Command, CommanderError, Option } from 'commander';
import { loadConfig, type ClosableLogger, type LoggerOptions } from '@conclave/common';
import type { CliIo } from './cli-io.js';
import { describeFailure } from './cli-failure.js';
import {
  clientConfigSchema,
  dropUndefined,
  parseFlags,
  readFlagsSchema,
  startConfigSchema,
  submitFlagsSchema,
} from './config-schemas.js';
import type { ControlCalls } from './control-calls.js';
import { EXIT_OK, EXIT_USAGE } from './exit-codes.js';
import type { ReadText } from './job-input.js';
import { cancelJobCommand, getJobCommand, submitJobCommand } from './jobs-command.js';
import { addModelCommand, listModelsCommand } from './models-command.js';
import { listNodesCommand } from './nodes-command.js';
import { runOrchestratorStart, type StartDeps } from './start-command.js';

/** Everything the CLI takes from the process; main.ts passes the real ones, tests their own. */
export interface OrchestratorCliDeps {
  /** The environment, read only through the config schemas (CONCLAVE_*). */
  env: Record<string, string | undefined>;
  io: CliIo;
  /** A Control API client for an address; not connected until its first call. */
  connect(address: string): ControlCalls;
  startOrchestrator: StartDeps['startOrchestrator'];
  /** Called only by `start`, so that client commands leave signals alone. */
  shutdownSignal(): Promise<string>;
  readText?: ReadText;
  createLogger?: (options: LoggerOptions) => ClosableLogger;
}

const ENV_PREFIX = 'CONCLAVE_';

/** Runs one command line (`argv` without node and script) and resolves with the exit code. */
export async function runOrchestratorCli(argv: readonly string[], deps: OrchestratorCliDeps): Promise<number> {
  let exitCode = EXIT_OK;
  const program = buildOrchestratorProgram(deps, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed the message or the help.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT_OK : EXIT_USAGE;
    }
    const failure = describeFailure(err);
    deps.io.stderr.write(`${failure.line}\n`);
    return failure.exitCode;
  }
}

/** The commander tree; `setExitCode` receives each action's result. */
export function buildOrchestratorProgram(deps: OrchestratorCliDeps, setExitCode: (code: number) => void): Command {
  const { io, env } = deps;
  const program = new Command('orchestrator')
    .description('Conclave orchestrator: run the server, or drive it through the Control API.')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    })
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('start')
    .description('Run the orchestrator until SIGINT or SIGTERM.')
    .option('--redis-url <url>', 'use this Redis instead of an embedded redis-server (env CONCLAVE_REDIS_URL)')
    .option('--grpc-host <host>', 'gRPC bind address (default 127.0.0.1; env CONCLAVE_GRPC_HOST)')
    .option('--grpc-port <port>', 'gRPC port, 0 = any free port (default 7400; env CONCLAVE_GRPC_PORT)')
    .option('--http-host <host>', 'HTTP bind address (default: the gRPC host; env CONCLAVE_HTTP_HOST)')
    .option('--http-port <port>', 'HTTP port, 0 = any free port, -1 = off (default 7401; env CONCLAVE_HTTP_PORT)')
    .option('--data-dir <dir>', 'state, logs and embedded Redis (default ./.conclave/orchestrator; env CONCLAVE_DATA_DIR)')
    .addOption(new Option('--log-level <level>', 'default info; env CONCLAVE_LOG_LEVEL').choices(['error', 'warn', 'info', 'debug']))
    .option('--config <file>', 'YAML file with the same keys in camelCase (env CONCLAVE_CONFIG)')
    .action(async (opts: Record<string, string | undefined>) => {
      const { config: file, ...flags } = opts;
      const configFile = file ?? env[`${ENV_PREFIX}CONFIG`];
      const config = await loadConfig(startConfigSchema, {
        flags: dropUndefined(flags),
        env,
        envPrefix: ENV_PREFIX,
        ...(configFile !== undefined ? { file: configFile } : {}),
        errorCode: 'ORCH-STATE-703',
      });
      setExitCode(
        await runOrchestratorStart(config, {
          startOrchestrator: deps.startOrchestrator,
          shutdownSignal: deps.shutdownSignal(),
          stderr: io.stderr,
          ...(deps.createLogger ? { createLogger: deps.createLogger } : {}),
        }),
      );
    });

  /** Resolves the address (flag > CONCLAVE_ADDRESS > default), runs `fn`, and always closes the client. */
  const withCalls = async (opts: { address?: string }, fn: (calls: ControlCalls) => Promise<number>): Promise<void> => {
    const { address } = await loadConfig(clientConfigSchema, {
      flags: dropUndefined({ address: opts.address }),
      env,
      envPrefix: ENV_PREFIX,
      errorCode: 'ORCH-STATE-703',
    });
    const calls = deps.connect(address);
    try {
      setExitCode(await fn(calls));
    } finally {
      calls.close();
    }
  };
  const clientCommand = (parent: Command, name: string, description: string): Command =>
    parent
      .command(name)
      .description(description)
      .option('--address <host:port>', 'orchestrator gRPC address (default 127.0.0.1:7400; env CONCLAVE_ADDRESS)')
      .option('--json', 'print JSON instead of a table');

  const models = program.command('models').description('Models in the registry.');
  clientCommand(models, 'add', 'Upload an ONNX model under NAME.')
    .argument('<name>', 'model name')
    .argument('<file>', 'path to the .onnx file')
    .action(async (name: string, file: string, opts: { address?: string; json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => addModelCommand(calls, io, { name, file, json }));
    });
  clientCommand(models, 'list', 'List the models.').action(async (opts: { address?: string; json?: boolean }) => {
    const { json } = parseFlags(readFlagsSchema, { json: opts.json });
    await withCalls(opts, (calls) => listModelsCommand(calls, io, { json }));
  });

  const nodes = program.command('nodes').description('Nodes of the fleet.');
  clientCommand(nodes, 'list', 'List the nodes and their state.').action(async (opts: { address?: string; json?: boolean }) => {
    const { json } = parseFlags(readFlagsSchema, { json: opts.json });
    await withCalls(opts, (calls) => listNodesCommand(calls, io, { json }));
  });

  const jobs = program.command('jobs').description('Inference and generation jobs.');
  clientCommand(jobs, 'submit', 'Submit a job; --wait follows it to the end.')
    .addOption(new Option('--kind <kind>', 'infer (default) or generate').choices(['infer', 'generate']))
    .option('--model <name>', 'model to run (infer)')
    .option('--input <json|@file>', 'input tensors as JSON, or @file.json (infer)')
    .option('--prompt <text>', 'prompt (generate)')
    .option('--max-tokens <n>', 'most tokens to generate (generate)')
    .option('--temperature <t>', 'sampling temperature (generate)')
    .option('--seed <n>', 'sampling seed (generate)')
    .option('--priority <n>', 'higher runs first (default 0)')
    .option('--timeout-ms <n>', "job timeout; 0 = the orchestrator's default")
    .addOption(new Option('--accelerator <name>', 'require a backend').choices(['cpu', 'hailo']))
    .option('--capability <name>', 'require a node capability, e.g. text-generation')
    .option('--client-job-id <key>', 'idempotency key: resubmitting returns the first job')
    .option('--wait', 'follow the job until it completes, fails or is cancelled')
    .action(async (opts: Record<string, unknown> & { address?: string }) => {
      const { address, ...rest } = opts;
      const flags = parseFlags(submitFlagsSchema, rest);
      await withCalls({ ...(address !== undefined ? { address } : {}) }, (calls) =>
        submitJobCommand(calls, io, { ...flags, ...(deps.readText ? { readText: deps.readText } : {}) }),
      );
    });
  clientCommand(jobs, 'get', 'Show a job and its outputs.')
    .argument('<id>', 'job id')
    .action(async (id: string, opts: { address?: string; json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => getJobCommand(calls, io, id, { json }));
    });
  clientCommand(jobs, 'cancel', 'Cancel a queued or running job.')
    .argument('<id>', 'job id')
    .action(async (id: string, opts: { address?: string; json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => cancelJobCommand(calls, io, id, { json }));
    });

  return program;
}
