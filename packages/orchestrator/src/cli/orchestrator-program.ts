import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { ConclaveError, EXIT_OK, EXIT_USAGE, describeUsageError, loadConfig, z, type ClosableLogger, type LoggerOptions, formatDurationMs } from '@conclave/common';
import { OPERATOR_TOKEN_FILE } from '../operator-auth.js';
import {
  claimCommand, contextCommand, createRoomCommand, listRoomsCommand, releaseCommand, sendCommand, tailRoomCommand,
} from './chat-command.js';
import type { CliIo } from './cli-io.js';
import { describeFailure } from './cli-failure.js';
import {
  DEFAULT_DATA_DIR,
  chatClaimFlagsSchema,
  chatReleaseFlagsSchema,
  chatSendFlagsSchema,
  chatTailFlagsSchema,
  logsFlagsSchema,
  clientConfigSchema,
  dropUndefined,
  jobsListFlagsSchema,
  addModelFlagsSchema,
  removeModelFlagsSchema,
  parseFlags,
  readFlagsSchema,
  startConfigSchema,
  submitFlagsSchema,
  tokenCreateFlagsSchema,
} from './config-schemas.js';
import type { ControlCalls } from './control-calls.js';
import type { ReadText } from './job-input.js';
import { logsCommand } from './logs-command.js';
import { cancelJobCommand, getJobCommand, listJobsCommand, submitJobCommand } from './jobs-command.js';
import { resolveKeyDataDir, rotateKeyCommand, showKeyCommand } from './key-command.js';
import { ORCHESTRATOR_VERSION } from '../version.js';
import { addModelCommand, listModelsCommand, removeModelCommand } from './models-command.js';
import {
  approveNodeCommand, drainNodeCommand, getNodeCommand, listNodesCommand, revokeNodeCommand, undrainNodeCommand,
} from './nodes-command.js';
import { runOrchestratorStart, type StartDeps } from './start-command.js';
import { createTokenCommand, listTokensCommand, revokeTokenCommand } from './token-command.js';

/** How a client command reaches the orchestrator, besides its address. */
export interface ConnectOptions {
  /** Sent as `authorization: Bearer <token>` on every call. */
  operatorToken?: string;
  /** PEM CA: connect with TLS, trusting it. */
  tlsCa?: Buffer;
}

/**
 * Data dirs searched for the operator token when no --data-dir is given, in order: the default of
 * `orchestrator start`, then the local fleet's orchestrator (`pnpm start`).
 */
export const DEFAULT_TOKEN_DATA_DIRS = [DEFAULT_DATA_DIR, './.conclave/local/orchestrator'] as const;

/** Everything the CLI takes from the process; main.ts passes the real ones, tests their own. */
export interface OrchestratorCliDeps {
  /** The environment, read only through the config schemas (CONCLAVE_*). */
  env: Record<string, string | undefined>;
  io: CliIo;
  /** A Control API client for an address; not connected until its first call. */
  connect(address: string, options: ConnectOptions): ControlCalls;
  /** Where the default data dirs are resolved. @default process.cwd() */
  cwd?: string;
  startOrchestrator: StartDeps['startOrchestrator'];
  /** Called only by `start`, so that client commands leave signals alone. */
  shutdownSignal(): Promise<string>;
  /**
   * Called only by commands that run until the operator stops them (`chat tail -f`): resolves at
   * the first SIGINT or SIGTERM, which ends the command cleanly (exit 0).
   */
  interruptSignal(): Promise<string>;
  readText?: ReadText;
  createLogger?: (options: LoggerOptions) => ClosableLogger;
  lockDataDir?: StartDeps['lockDataDir'];
}

const ENV_PREFIX = 'CONCLAVE_';

/** What `start --help` shows as defaults: the schema's own, so that the two cannot drift apart. */
const START_DEFAULTS = startConfigSchema.parse({});

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
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // `orchestrator` or `orchestrator jobs` alone: commander has printed the help to stderr.
      if (err.code === 'commander.help') return EXIT_USAGE;
      const usage = describeUsageError(err.message, 'ORCH-STATE-705');
      deps.io.stderr.write(`${usage.line}\n`);
      return usage.exitCode;
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
    .version(ORCHESTRATOR_VERSION, '--version', 'print the version and exit')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // Parse errors are printed by runOrchestratorCli, as one coded line.
      outputError: () => undefined,
    });

  program
    .command('start')
    .description('Run the orchestrator until SIGINT or SIGTERM.')
    .option('--redis-url <url>', 'use this Redis instead of an embedded redis-server (env CONCLAVE_REDIS_URL)')
    .option('--grpc-host <host>', `gRPC bind address of the node gateway and Control API (default ${START_DEFAULTS.grpcHost}; env CONCLAVE_GRPC_HOST)`)
    .option('--grpc-port <port>', `gRPC port, 0 = any free port (default ${START_DEFAULTS.grpcPort}; env CONCLAVE_GRPC_PORT)`)
    .option('--http-host <host>', `HTTP bind address; health and metrics carry no authentication (default ${START_DEFAULTS.httpHost}; env CONCLAVE_HTTP_HOST)`)
    .option('--http-port <port>', `HTTP port, 0 = any free port, -1 = off (default ${START_DEFAULTS.httpPort}; env CONCLAVE_HTTP_PORT)`)
    .option('--data-dir <dir>', `state, logs and embedded Redis (default ${START_DEFAULTS.dataDir}; env CONCLAVE_DATA_DIR)`)
    .addOption(new Option('--log-level <level>', `default ${START_DEFAULTS.logLevel}; env CONCLAVE_LOG_LEVEL`).choices(['error', 'warn', 'info', 'debug']))
    .addOption(
      new Option('--approval <mode>', `auto: a valid join token accepts a node; manual: it waits for \`nodes approve\` (default ${START_DEFAULTS.approval}; env CONCLAVE_APPROVAL)`).choices(['auto', 'manual']),
    )
    .option('--advertise-address <host:port>', 'address that join strings carry (default 127.0.0.1:<port> on loopback, else <hostname>:<port>; env CONCLAVE_ADVERTISE_ADDRESS)')
    .option('--tls-cert <file>', 'PEM certificate: serve gRPC over TLS (with --tls-key; env CONCLAVE_TLS_CERT)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert (env CONCLAVE_TLS_KEY)')
    .option('--max-slots-per-node <n>', `most jobs one node is given at once, whatever it claims (default ${START_DEFAULTS.maxSlotsPerNode}; env CONCLAVE_MAX_SLOTS_PER_NODE)`)
    .option('--chat-max-message-bytes <n>', `largest chat message text in bytes (default ${START_DEFAULTS.chatMaxMessageBytes}; env CONCLAVE_CHAT_MAX_MESSAGE_BYTES)`)
    .option('--chat-log-max-len <n>', `entries each chat room's log keeps (default ${START_DEFAULTS.chatLogMaxLen}; env CONCLAVE_CHAT_LOG_MAX_LEN)`)
    .option('--chat-context-messages <n>', `messages in a room's context window (default ${START_DEFAULTS.chatContextMessages}; env CONCLAVE_CHAT_CONTEXT_MESSAGES)`)
    .option('--chat-context-tokens <n>', `estimated tokens in a room's context window (default ${START_DEFAULTS.chatContextTokens}; env CONCLAVE_CHAT_CONTEXT_TOKENS)`)
    .option('--log-max-records <n>', `records the fleet log store keeps (default ${START_DEFAULTS.logMaxRecords}; env CONCLAVE_LOG_MAX_RECORDS)`)
    .option('--log-max-age <duration>', `age past which stored log records are trimmed, e.g. 12h, 7d (default ${formatDurationMs(START_DEFAULTS.logMaxAge)}; env CONCLAVE_LOG_MAX_AGE)`)
    .option('--log-node-rate <n>', `log records a second stored from one node; the rest show as a gap (default ${START_DEFAULTS.logNodeRate}; env CONCLAVE_LOG_NODE_RATE)`)
    .option('--insecure-control', 'without TLS, let Control API callers in from the network, not only loopback (env CONCLAVE_INSECURE_CONTROL)')
    .option('--token-ttl <duration>', `lifetime of a join token created without --ttl, e.g. 30m, 1h, 7d (default ${formatDurationMs(START_DEFAULTS.tokenTtl)}; env CONCLAVE_TOKEN_TTL)`)
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
      if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
        throw new ConclaveError('ORCH-STATE-703', {
          detail: 'tlsCert and tlsKey go together (env CONCLAVE_TLS_CERT, CONCLAVE_TLS_KEY): give both or neither',
        });
      }
      setExitCode(
        await runOrchestratorStart(config, {
          startOrchestrator: deps.startOrchestrator,
          shutdownSignal: deps.shutdownSignal(),
          stdout: io.stdout,
          stderr: io.stderr,
          ...(deps.createLogger ? { createLogger: deps.createLogger } : {}),
          ...(deps.lockDataDir ? { lockDataDir: deps.lockDataDir } : {}),
        }),
      );
    });

  /**
   * Resolves the address (flag > CONCLAVE_ADDRESS > default), the operator token (--token >
   * CONCLAVE_OPERATOR_TOKEN > <data-dir>/operator-token) and the TLS CA, runs `fn`, and always
   * closes the client.
   */
  const withCalls = async (opts: ClientFlags, fn: (calls: ControlCalls) => Promise<number>): Promise<void> => {
    const config = await loadConfig(clientConfigSchema, {
      flags: dropUndefined({ address: opts.address, operatorToken: opts.token, tlsCa: opts.tlsCa }),
      env,
      envPrefix: ENV_PREFIX,
      errorCode: 'ORCH-STATE-703',
    });
    const operatorToken = config.operatorToken ?? (await discoverOperatorToken(opts.dataDir, deps.cwd ?? process.cwd()));
    const tlsCa = config.tlsCa !== undefined ? await readTlsFile(config.tlsCa) : undefined;
    const calls = deps.connect(config.address, {
      ...(operatorToken !== undefined ? { operatorToken } : {}),
      ...(tlsCa !== undefined ? { tlsCa } : {}),
    });
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
      .option('--token <token>', 'operator token (env CONCLAVE_OPERATOR_TOKEN; default: read from <data-dir>/operator-token)')
      .option('--data-dir <dir>', 'orchestrator data dir holding operator-token (default ./.conclave/orchestrator, then ./.conclave/local/orchestrator)')
      .option('--tls-ca <file>', 'connect with TLS, trusting this PEM CA (env CONCLAVE_TLS_CA)')
      .option('--json', 'print JSON instead of a table');

  const models = program.command('models').description('Models in the registry.');
  clientCommand(models, 'add', 'Upload an ONNX model under NAME, with its Hailo bundle if given (FILE.onnx stays the CPU reference).')
    .argument('<name>', 'model name')
    .argument('<file>', 'path to the .onnx file: the CPU reference, required with a bundle too')
    .option('--hef <chip=file>', 'a HEF and the chip it was compiled for (hailo8 or hailo8l); repeat for each chip', collect, [])
    .option('--pre <file>', 'pre.onnx: what runs on the CPU before the HEF')
    .option('--post <file>', 'post.onnx: what runs on the CPU after the HEF')
    .option('--hailo-manifest <file>', 'the bundle manifest (JSON, docs/cli.md); required with --hef')
    .action(async (name: string, file: string, opts: ClientFlags & { hef: string[]; pre?: string; post?: string; hailoManifest?: string; json?: boolean }) => {
      const flags = parseFlags(addModelFlagsSchema, { hef: opts.hef, pre: opts.pre, post: opts.post, hailoManifest: opts.hailoManifest, json: opts.json });
      await withCalls(opts, (calls) => addModelCommand(calls, io, { name, file, ...flags }));
    });
  clientCommand(models, 'list', 'List the models.').action(async (opts: ClientFlags & { json?: boolean }) => {
    const { json } = parseFlags(readFlagsSchema, { json: opts.json });
    await withCalls(opts, (calls) => listModelsCommand(calls, io, { json }));
  });
  clientCommand(models, 'remove', 'Remove a model from the registry and delete its file; refused while queued or running jobs need it.')
    .argument('<name>', 'model name')
    .option('--force', 'remove it even while jobs need it (they fail on nodes without the file)')
    .action(async (name: string, opts: ClientFlags & { force?: boolean; json?: boolean }) => {
      const flags = parseFlags(removeModelFlagsSchema, { force: opts.force, json: opts.json });
      await withCalls(opts, (calls) => removeModelCommand(calls, io, name, flags));
    });

  const nodes = program.command('nodes').description('Nodes of the fleet.');
  clientCommand(nodes, 'list', 'List the nodes and their state.').action(async (opts: ClientFlags & { json?: boolean }) => {
    const { json } = parseFlags(readFlagsSchema, { json: opts.json });
    await withCalls(opts, (calls) => listNodesCommand(calls, io, { json }));
  });

  clientCommand(nodes, 'get', 'Show one node, every field the orchestrator has.')
    .argument('<id|name>', 'node id, or its name when no other node has it')
    .action(async (idOrName: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => getNodeCommand(calls, io, idOrName, { json }));
    });

  clientCommand(nodes, 'approve', 'Accept a node that is pending approval (orchestrator started with --approval manual).')
    .argument('<id>', 'node id')
    .action(async (id: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => approveNodeCommand(calls, io, id, { json }));
    });
  clientCommand(nodes, 'revoke', "End a node's sessions and refuse it from then on.")
    .argument('<id>', 'node id')
    .action(async (id: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => revokeNodeCommand(calls, io, id, { json }));
    });
  clientCommand(nodes, 'drain', 'Give a node no new work; what it runs finishes. Kept until `nodes undrain`, across reconnects and restarts.')
    .argument('<id>', 'node id')
    .action(async (id: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => drainNodeCommand(calls, io, id, { json }));
    });
  clientCommand(nodes, 'undrain', 'Let a drained node take new work again.')
    .argument('<id>', 'node id')
    .action(async (id: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => undrainNodeCommand(calls, io, id, { json }));
    });

  const token = program.command('token').description('Join tokens: how a new board enrolls.');
  clientCommand(token, 'create', 'Create a single-use join token and print its join string.')
    .option('--ttl <duration>', "how long the token is valid, e.g. 30m, 1h, 7d (default: the orchestrator's --token-ttl, 1h)")
    .action(async (opts: ClientFlags & { ttl?: string; json?: boolean }) => {
      const { ttl, json } = parseFlags(tokenCreateFlagsSchema, { ttl: opts.ttl, json: opts.json });
      await withCalls(opts, (calls) => createTokenCommand(calls, io, { ttlMs: ttl, json }));
    });
  clientCommand(token, 'list', 'List join tokens: active, used, revoked, expired (kept 24 h after expiry).').action(
    async (opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => listTokensCommand(calls, io, { json }));
    },
  );
  clientCommand(token, 'revoke', 'Revoke a join token so that it can no longer enroll a node.')
    .argument('<id>', 'token id (from `token list`)')
    .action(async (id: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => revokeTokenCommand(calls, io, id, { json }));
    });

  const key = program.command('key').description("The orchestrator's own key (works on the data dir; no orchestrator needed).");
  const keyCommand = (name: string, description: string): Command =>
    key
      .command(name)
      .description(description)
      .option('--data-dir <dir>', 'orchestrator data dir (env CONCLAVE_DATA_DIR; default ./.conclave/orchestrator, then ./.conclave/local/orchestrator)')
      .option('--json', 'print JSON');
  const keyDataDir = async (opts: { dataDir?: string }): Promise<string> => {
    const config = loadConfig(keyConfigSchema, {
      flags: dropUndefined({ dataDir: opts.dataDir }),
      env,
      envPrefix: ENV_PREFIX,
      errorCode: 'ORCH-STATE-703',
    });
    return resolveKeyDataDir(config.dataDir, DEFAULT_TOKEN_DATA_DIRS, deps.cwd ?? process.cwd());
  };
  keyCommand('show', "Print the fingerprint of the orchestrator's key (what join strings pin).").action(
    async (opts: { dataDir?: string; json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      setExitCode(await showKeyCommand(io, { dataDir: await keyDataDir(opts), json }));
    },
  );
  keyCommand('rotate', 'Replace the key with a new one, signed over by the old; takes effect at the next start.').action(
    async (opts: { dataDir?: string; json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      setExitCode(await rotateKeyCommand(io, { dataDir: await keyDataDir(opts), json }));
    },
  );

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
    .addOption(new Option('--accelerator <name>', 'require a backend: hailo only on a node whose chip is active').choices(['cpu', 'hailo']))
    .addOption(
      new Option('--prefer-accelerator <name>', 'run where the model runs on this accelerator if a node can, else anywhere').choices(['hailo']),
    )
    .option('--capability <name>', 'require a node capability, e.g. text-generation')
    .option('--client-job-id <key>', 'idempotency key: resubmitting returns the first job')
    .option('--wait', 'follow the job until it completes, fails or is cancelled')
    .action(async (opts: Record<string, unknown> & ClientFlags) => {
      const { address, token, dataDir, tlsCa, ...rest } = opts;
      const flags = parseFlags(submitFlagsSchema, rest);
      await withCalls(dropUndefined({ address, token, dataDir, tlsCa }), (calls) =>
        submitJobCommand(calls, io, { ...flags, ...(deps.readText ? { readText: deps.readText } : {}) }),
      );
    });
  clientCommand(jobs, 'get', 'Show a job and its outputs.')
    .argument('<id>', 'job id')
    .action(async (id: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => getJobCommand(calls, io, id, { json }));
    });
  clientCommand(jobs, 'list', 'List jobs, newest first; queued ones no node can run say why.')
    .option('--state <state>', 'queued, running, completed, failed or cancelled')
    .option('--model <name>', "one model's jobs")
    .option('--node <id|name>', 'jobs that ran (or run) on this node')
    .option('--limit <n>', 'jobs to show at most (default 50)')
    .action(async (opts: ClientFlags & { state?: string; model?: string; node?: string; limit?: string; json?: boolean }) => {
      const flags = parseFlags(jobsListFlagsSchema, { state: opts.state, model: opts.model, node: opts.node, limit: opts.limit, json: opts.json });
      await withCalls(opts, (calls) => listJobsCommand(calls, io, flags));
    });
  clientCommand(jobs, 'cancel', 'Cancel a queued or running job.')
    .argument('<id>', 'job id')
    .action(async (id: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => cancelJobCommand(calls, io, id, { json }));
    });

  const chat = program.command('chat').description('The group chat: rooms, messages, claims (as the operator).');
  clientCommand(chat, 'rooms', 'List the rooms with their head seq and members.').action(async (opts: ClientFlags & { json?: boolean }) => {
    const { json } = parseFlags(readFlagsSchema, { json: opts.json });
    await withCalls(opts, (calls) => listRoomsCommand(calls, io, { json }));
  });
  clientCommand(chat, 'create', 'Create a room (CHAT-REQ-206 if it exists).')
    .argument('<room>', 'room name: 1-64 of [a-z0-9._-], starting with a letter or digit')
    .action(async (room: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => createRoomCommand(calls, io, room, { json }));
    });
  clientCommand(chat, 'send', 'Post TEXT to ROOM as the operator; prints the seq it got.')
    .argument('<room>', 'room name')
    .argument('<text>', 'the message')
    .option('--client-msg-id <id>', 'idempotency key: sending again with it appends nothing and prints the first seq')
    .action(async (room: string, text: string, opts: ClientFlags & { clientMsgId?: string; json?: boolean }) => {
      const flags = parseFlags(chatSendFlagsSchema, { clientMsgId: opts.clientMsgId, json: opts.json });
      await withCalls(opts, (calls) => sendCommand(calls, io, { room, text, ...flags }));
    });
  clientCommand(chat, 'tail', "Print ROOM's messages in seq order, one a line; -f keeps following until Ctrl-C.")
    .argument('<room>', 'room name')
    .option('--from <seq>', 'first seq to print (default: the oldest the log holds)')
    .option('-f, --follow', 'keep printing new messages until SIGINT or SIGTERM (then exit 0)')
    .action(async (room: string, opts: ClientFlags & { from?: string; follow?: boolean; json?: boolean }) => {
      const flags = parseFlags(chatTailFlagsSchema, { from: opts.from, follow: opts.follow, json: opts.json });
      await withCalls(opts, (calls) =>
        tailRoomCommand(calls, io, {
          room, fromSeq: flags.from, follow: flags.follow, json: flags.json,
          // Signals are taken only while following: a plain tail leaves them alone.
          ...(flags.follow ? { interrupted: deps.interruptSignal() } : {}),
        }),
      );
    });
  clientCommand(program, 'logs', "The fleet's log records (ORCH-, NODE-, CHAT-, MODEL-), oldest first; -f keeps following until Ctrl-C.")
    .option('-f, --follow', 'keep printing new records until SIGINT or SIGTERM (with --job: until the job has ended)')
    .option('--prefix <prefix...>', 'only these prefixes: ORCH- NODE- CHAT- MODEL- (several allowed)')
    .option('--node <id|name>', "one node's records")
    .option('--section <section>', 'one section: LOAD, NET, JOB, … (docs/errors.md lists them)')
    .option('--level <level>', 'this level and more severe: error, warn, info, debug')
    .option('--job <id>', "one job's records, from the orchestrator and every node that ran it")
    .option('--since <when>', 'from a time back (10m, 2h, 1d) or an ISO time (2026-12-01T10:00:00Z)')
    .option('--limit <n>', 'records of history: the newest N (default 200; 20 before following), or with --since the first N from then')
    .action(async (opts: ClientFlags & {
      follow?: boolean; prefix?: string[]; node?: string; section?: string; level?: string; job?: string; since?: string; limit?: string; json?: boolean;
    }) => {
      const { limit } = parseFlags(logsFlagsSchema, { limit: opts.limit });
      await withCalls(opts, (calls) =>
        logsCommand(calls, io, {
          follow: opts.follow ?? false, prefixes: opts.prefix ?? [], json: opts.json ?? false,
          ...(opts.node !== undefined ? { node: opts.node } : {}),
          ...(opts.section !== undefined ? { section: opts.section } : {}),
          ...(opts.level !== undefined ? { level: opts.level } : {}),
          ...(opts.job !== undefined ? { job: opts.job } : {}),
          ...(opts.since !== undefined ? { since: opts.since } : {}),
          ...(limit !== undefined ? { limit } : {}),
          ...(opts.follow ? { interrupted: deps.interruptSignal() } : {}),
        }),
      );
    });
  clientCommand(chat, 'claim', 'Claim RESOURCE in ROOM, first come first served: exit 0 with a fence when won, 3 when held.')
    .argument('<room>', 'room name')
    .argument('<resource>', 'resource key: 1-128 printable characters without spaces')
    .option('--ttl <duration>', 'how long the claim holds unless released, e.g. 500ms, 30s, 2m (default 30s; 100ms to 24h)')
    .action(async (room: string, resource: string, opts: ClientFlags & { ttl?: string; json?: boolean }) => {
      const { ttl, json } = parseFlags(chatClaimFlagsSchema, { ttl: opts.ttl, json: opts.json });
      await withCalls(opts, (calls) => claimCommand(calls, io, { room, resource, ttlMs: ttl, json }));
    });
  clientCommand(chat, 'release', 'Release a claim with the fence it answered with.')
    .argument('<room>', 'room name')
    .argument('<resource>', 'resource key')
    .option('--fence <n>', 'the fencing token of the claim (required)')
    .action(async (room: string, resource: string, opts: ClientFlags & { fence?: string; json?: boolean }) => {
      if (opts.fence === undefined) throw new ConclaveError('ORCH-REQ-253', { detail: '--fence is required: the fence `chat claim` answered with' });
      const { fence, json } = parseFlags(chatReleaseFlagsSchema, { fence: opts.fence, json: opts.json });
      await withCalls(opts, (calls) => releaseCommand(calls, io, { room, resource, fence, json }));
    });
  clientCommand(chat, 'context', "Show ROOM's context window: the summary and the newest messages the orchestrator keeps.")
    .argument('<room>', 'room name')
    .action(async (room: string, opts: ClientFlags & { json?: boolean }) => {
      const { json } = parseFlags(readFlagsSchema, { json: opts.json });
      await withCalls(opts, (calls) => contextCommand(calls, io, room, { json }));
    });

  return program;
}

/** `key show|rotate`: the data dir, flag > CONCLAVE_DATA_DIR; absent: the defaults are searched. */
const keyConfigSchema = z.object({ dataDir: z.string().min(1).optional() });

/** Flags every client command takes. */
interface ClientFlags {
  address?: string;
  token?: string;
  dataDir?: string;
  tlsCa?: string;
}

/**
 * The operator token from `<dataDir>/operator-token`: the given dir only, or else the first of
 * DEFAULT_TOKEN_DATA_DIRS that has the file. Undefined when none has it: the orchestrator then
 * answers ORCH-AUTH-553, which says where the token lives.
 */
export async function discoverOperatorToken(dataDir: string | undefined, cwd: string): Promise<string | undefined> {
  const dirs = dataDir !== undefined ? [dataDir] : DEFAULT_TOKEN_DATA_DIRS;
  for (const dir of dirs) {
    const path = resolve(cwd, dir, OPERATOR_TOKEN_FILE);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw new ConclaveError('ORCH-AUTH-555', { detail: `cannot read ${path}: ${code ?? String(err)}`, data: { path }, cause: err });
    }
    const token = text.trim();
    if (token === '') throw new ConclaveError('ORCH-AUTH-555', { detail: `${path} is empty`, data: { path } });
    return token;
  }
  return undefined;
}

async function readTlsFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ConclaveError('ORCH-AUTH-556', {
      detail: `${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      data: { path },
      cause: err,
    });
  }
}

/** Commander's argParser for a repeatable option: each value appended. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
