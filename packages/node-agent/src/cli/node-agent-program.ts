import { Command, CommanderError, Option } from 'commander';
import {
  EXIT_OK,
  EXIT_USAGE,
  describeStartupFailure,
  describeUsageError,
  loadConfig,
  type ClosableLogger,
  type LoggerOptions,
} from '@conclave/common';
import { AGENT_VERSION } from '../version.js';
import { nodeAgentConfigSchema } from './start-config.js';
import { runNodeAgentStart, type NodeAgentStartDeps, type TextOut } from './start-command.js';
import { addChatCommands } from './chat-command.js';

/** Everything the CLI takes from the process; main.ts passes the real ones, tests their own. */
export interface NodeAgentCliDeps {
  /** The environment, read only through the config schema (CONCLAVE_*) and, by `chat`, CONCLAVE_DATA_DIR. */
  env: Record<string, string | undefined>;
  io: { stdout: TextOut; stderr: TextOut };
  startNodeAgent: NodeAgentStartDeps['startNodeAgent'];
  shutdownSignal(): Promise<string>;
  createLogger?: (options: LoggerOptions) => ClosableLogger;
  lockDataDir?: NodeAgentStartDeps['lockDataDir'];
}

const ENV_PREFIX = 'CONCLAVE_';

/** What `start --help` shows as defaults: the schema's own (the data dir has none, it is required). */
const START_DEFAULTS = nodeAgentConfigSchema.parse({ dataDir: '-' });

/** Runs one command line (`argv` without node and script) and resolves with the exit code. */
export async function runNodeAgentCli(argv: readonly string[], deps: NodeAgentCliDeps): Promise<number> {
  const { io, env } = deps;
  let exitCode = EXIT_OK;
  const program = new Command('node-agent')
    .description('Conclave node agent: joins an orchestrator and runs its jobs on this board.')
    .version(AGENT_VERSION, '--version', 'print the version and exit')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // Parse errors are printed below, as one coded line.
      outputError: () => undefined,
    });

  program
    .command('start')
    .description('Run the agent until SIGINT or SIGTERM.')
    .option('--join <join string>', 'join string from `orchestrator token create`: first start only; visible in `ps`, prefer env CONCLAVE_JOIN or --join-file')
    .option('--join-file <file>', 'file (mode 0600) holding the join string (env CONCLAVE_JOIN_FILE)')
    .option('--tls', 'TLS to the orchestrator with the system roots (default: TLS when the join string carries a certificate digest; env CONCLAVE_TLS)')
    .option('--tls-ca <file>', 'PEM CA or the orchestrator\'s self-signed certificate for TLS (env CONCLAVE_TLS_CA)')
    .option('--orchestrator <host:port>', 'orchestrator gRPC address (default: from the join string; env CONCLAVE_ORCHESTRATOR)')
    .option('--data-dir <dir>', 'identity, models, outbox and logs (env CONCLAVE_DATA_DIR)')
    .option('--name <name>', 'node name shown by `orchestrator nodes list` (env CONCLAVE_NAME)')
    .option('--slots <n>', 'jobs run at once (default: CPU count; env CONCLAVE_SLOTS)')
    .option('--http-host <host>', `bind address of the local HTTP server (default ${START_DEFAULTS.httpHost}; env CONCLAVE_HTTP_HOST)`)
    .option('--http-port <port>', `local /healthz and /metrics; 0 = any free, -1 = off (default ${START_DEFAULTS.httpPort}; env CONCLAVE_HTTP_PORT)`)
    .addOption(new Option('--log-level <level>', `default ${START_DEFAULTS.logLevel}; env CONCLAVE_LOG_LEVEL`).choices(['error', 'warn', 'info', 'debug']))
    .addOption(
      new Option('--log-ship-level <level>', `least severe level shipped to the orchestrator's fleet logs (default ${START_DEFAULTS.logShipLevel}; env CONCLAVE_LOG_SHIP_LEVEL)`)
        .choices(['error', 'warn', 'info', 'debug']),
    )
    .option('--log-spool-max-bytes <bytes>', `unshipped log records kept on disk at most; past it the oldest go (default ${START_DEFAULTS.logSpoolMaxBytes}; env CONCLAVE_LOG_SPOOL_MAX_BYTES)`)
    .addOption(
      new Option('--backend <kind>', 'auto: the Hailo chip when detected, else the CPU; hailo: only with the chip; cpu (default auto; env CONCLAVE_BACKEND)')
        .choices(['auto', 'cpu', 'hailo']),
    )
    .option('--hailo-socket <path>', 'the Hailo sidecar\'s unix socket (default: <data-dir>/hailo.sock with --hailo-sidecar-command, else /run/conclave/hailo.sock; env CONCLAVE_HAILO_SOCKET)')
    .option('--hailo-sidecar-command <command>', 'run the sidecar as a child, e.g. "python3 /opt/conclave/hailo-sidecar/conclave-hailo-sidecar" (default: attach to systemd\'s; env CONCLAVE_HAILO_SIDECAR_COMMAND)')
    .option('--detection-root <dir>', 'Hailo detection reads dev/ and sys/ under it (default /; env CONCLAVE_DETECTION_ROOT)')
    .option('--config <file>', 'YAML file with the same keys in camelCase (env CONCLAVE_CONFIG)')
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const { config: file, ...flags } = opts;
      const configFile = (typeof file === 'string' ? file : undefined) ?? env[`${ENV_PREFIX}CONFIG`];
      const config = await loadConfig(nodeAgentConfigSchema, {
        flags: Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)),
        env,
        envPrefix: ENV_PREFIX,
        ...(configFile !== undefined ? { file: configFile } : {}),
        errorCode: 'NODE-STATE-703',
      });
      exitCode = await runNodeAgentStart(config, {
        startNodeAgent: deps.startNodeAgent,
        shutdownSignal: deps.shutdownSignal(),
        stdout: io.stdout,
        stderr: io.stderr,
        ...(deps.createLogger ? { createLogger: deps.createLogger } : {}),
        ...(deps.lockDataDir ? { lockDataDir: deps.lockDataDir } : {}),
      });
    });

  addChatCommands(program, {
    env, io, shutdownSignal: () => deps.shutdownSignal(),
    setExitCode: (code) => {
      exitCode = code;
    },
  });

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // `node-agent` alone: commander has printed the help to stderr.
      if (err.code === 'commander.help') return EXIT_USAGE;
      const usage = describeUsageError(err.message, 'NODE-STATE-705');
      io.stderr.write(`${usage.line}\n`);
      return usage.exitCode;
    }
    const failure = describeStartupFailure(err, 'NODE-STATE-707');
    io.stderr.write(`${failure.line}\n`);
    return failure.exitCode;
  }
}
