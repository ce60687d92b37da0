import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants as fsConstants, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { Backoff, sleep } from './backoff.js';
import { writeFileDurable } from './durable-file.js';
import { isProcessRunning, pidsWithArgs } from './process-state.js';
import { ConclaveError } from './errors/conclave-error.js';
import { maskUrlCredentials } from './log-format.js';
import type { Logger } from './logger.js';

/** Where redis-server lives when it is not on PATH (Debian, source builds, Homebrew on Apple silicon). */
export const REDIS_FALLBACK_DIRS = ['/usr/bin', '/usr/local/bin', '/usr/sbin', '/opt/homebrew/bin'] as const;

export const REDIS_HOST = '127.0.0.1';
/** How long a fresh redis-server may take to answer PING; loading a large AOF is the slow case. */
export const DEFAULT_REDIS_START_TIMEOUT_MS = 15_000;
/** stop() escalates to SIGKILL after this. */
export const REDIS_STOP_GRACE_MS = 5_000;
/** First ceiling of the full-jitter delay before a crashed redis-server is restarted. */
export const REDIS_RESTART_BASE_MS = 100;
/** No restart waits longer than this: while Redis is down the whole fleet waits. */
export const REDIS_RESTART_CAP_MS = 2_000;
/** A redis-server that ran this long before it died starts the restart backoff afresh. */
const RESTART_BACKOFF_RESET_MS = 10_000;
/** Attempts on a fresh free port when another process takes ours between probe and bind. */
const PORT_ATTEMPTS = 5;
const PING_INTERVAL_MS = 25;
const PING_TIMEOUT_MS = 1_000;

export interface LaunchRedisOptions {
  /** Working directory for AOF/RDB files and redis.log; created if missing. */
  dir: string;
  /** @default 0 — a free port chosen at launch */
  port?: number;
  /** Path of redis-server. @default found by findRedisServer() */
  bin?: string;
  /** @default true — production Redis runs with AOF (DESIGN, State and durability) */
  appendOnly?: boolean;
  /**
   * Sets `requirepass`; the handle's url then carries it. Handed over in `redis-auth.conf` (mode
   * 0600, in `dir`), never on the command line, where `ps` would show it.
   */
  password?: string;
  /**
   * Restart redis-server on the same port and dir whenever it exits without stop(), after a
   * full-jitter delay (REDIS_RESTART_BASE_MS doubling up to REDIS_RESTART_CAP_MS), logging
   * ORCH-STATE-708 each time and ORCH-STATE-709 when the port is taken. @default false
   */
  restartOnExit?: boolean;
  logger?: Logger;
  /** @default DEFAULT_REDIS_START_TIMEOUT_MS (15 s) */
  startTimeoutMs?: number;
}

export interface RedisServerHandle {
  /** `redis://127.0.0.1:<port>`, or `redis://:<password>@127.0.0.1:<port>`: never log it unmasked. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The running redis-server's pid; a new one after each restart (restartOnExit). */
  readonly pid: number;
  readonly dir: string;
  /** How many times restartOnExit has brought redis-server back. */
  readonly restarts: number;
  /** SHUTDOWN NOSAVE (SIGTERM if that fails), SIGKILL after 5 s; resolves once the process is gone. */
  stop(): Promise<void>;
  /** Sends a signal to the running redis-server without waiting, to simulate a crash. @default 'SIGKILL' */
  kill(signal?: NodeJS.Signals): void;
  /**
   * The exit code, or null when a signal ended it. Never rejects. With restartOnExit it resolves
   * only once redis-server is down for good, after stop().
   */
  readonly exited: Promise<number | null>;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export interface FindRedisServerOptions {
  /** @default process.env.PATH */
  pathEnv?: string;
  /** @default REDIS_FALLBACK_DIRS */
  fallbackDirs?: readonly string[];
}

/** The path of redis-server: `explicitPath` if given, else PATH, else the usual install dirs. */
export function findRedisServer(explicitPath?: string, options: FindRedisServerOptions = {}): string {
  if (explicitPath !== undefined) {
    if (isExecutable(explicitPath)) return resolve(explicitPath);
    throw new ConclaveError('ORCH-STATE-701', {
      detail: `no executable at ${explicitPath}`,
      data: { path: explicitPath },
    });
  }
  const fallbackDirs = options.fallbackDirs ?? REDIS_FALLBACK_DIRS;
  const pathDirs = (options.pathEnv ?? process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  const searched = [...new Set([...pathDirs, ...fallbackDirs])];
  for (const dir of searched) {
    const candidate = join(dir, 'redis-server');
    if (isExecutable(candidate)) return candidate;
  }
  throw new ConclaveError('ORCH-STATE-701', {
    detail: `not on PATH nor in ${fallbackDirs.join(', ')}; install it with \`apt-get install redis-server\` or \`brew install redis\`, or pass --redis-url`,
    data: { searched },
  });
}

/** A port that was free a moment ago; the caller must cope with losing the race for it. */
export function findFreePort(host: string = REDIS_HOST): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function encodeCommand(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/**
 * Sends commands over RESP and returns one string per reply: status, error
 * and integer replies as their line (`+PONG`, `-NOAUTH …`, `:1`), bulk
 * strings as their payload (`$-1` for nil). Array replies are not supported;
 * this is enough for AUTH, PING, INFO and SHUTDOWN, and common does not
 * depend on ioredis. A connection closed early resolves with what came.
 */
export function sendRedisCommands(
  host: string,
  port: number,
  commands: ReadonlyArray<readonly string[]>,
  timeoutMs: number = PING_TIMEOUT_MS,
): Promise<string[]> {
  return sendCommands({ host, port }, commands, timeoutMs);
}

/** Over TCP or a Unix socket (`path`); see sendRedisCommands. */
function sendCommands(
  target: { host: string; port: number } | { path: string },
  commands: ReadonlyArray<readonly string[]>,
  timeoutMs: number = PING_TIMEOUT_MS,
): Promise<string[]> {
  const where = 'path' in target ? target.path : `${target.host}:${target.port}`;
  return new Promise((resolveReplies, reject) => {
    const socket = createConnection(target);
    let buffer = Buffer.alloc(0);
    const replies: string[] = [];
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolveReplies(replies);
    };
    const timer = setTimeout(() => finish(new Error(`no reply from redis at ${where} in ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', () => socket.write(commands.map(encodeCommand).join('')));
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const newline = buffer.indexOf('\r\n');
        if (newline < 0) break;
        const line = buffer.subarray(0, newline).toString('utf8');
        if (line.startsWith('$') && line !== '$-1') {
          const length = Number(line.slice(1));
          const end = newline + 2 + length;
          if (buffer.length < end + 2) break;
          replies.push(buffer.subarray(newline + 2, end).toString('utf8'));
          buffer = buffer.subarray(end + 2);
        } else {
          replies.push(line);
          buffer = buffer.subarray(newline + 2);
        }
      }
      if (replies.length >= commands.length) finish();
    });
    socket.once('error', (err) => finish(err));
    socket.once('close', () => finish());
  });
}

function authCommands(password: string | undefined): string[][] {
  return password === undefined ? [] : [['AUTH', password]];
}

/**
 * Resolves true when the server answers PONG and is the process we started. Asked over the Unix
 * socket in the 0700 dir, never over TCP: whoever holds the TCP port (a squatter while ours failed
 * to bind it) would be handed the password by AUTH. Redis binds its TCP port before the socket and
 * exits when it cannot, so our pid answering on the socket means the port is ours too.
 */
async function answersPing(socketPath: string, password: string | undefined, pid: number | undefined): Promise<boolean> {
  try {
    const auth = authCommands(password);
    const replies = await sendCommands({ path: socketPath }, [...auth, ['PING'], ['INFO', 'server']]);
    return replies[auth.length] === '+PONG' && (replies[auth.length + 1] ?? '').includes(`process_id:${String(pid)}\r\n`);
  } catch {
    return false;
  }
}

function tailOfFile(path: string, maxLines = 15): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.trimEnd().split('\n').slice(-maxLines).join('\n');
  } catch {
    return '';
  }
}

const ADDRESS_IN_USE = /address already in use|could not create server tcp listening socket/i;

interface Attempt {
  child: ChildProcess;
  exited: Promise<number | null>;
  port: number;
}

/**
 * Children still running, stopped synchronously if this process exits first, so a crashed test
 * run leaves no redis-server behind. SIGTERM, not SIGKILL: Redis then flushes its AOF. One exit
 * hook serves all. A death that runs no hook (kill -9) is the guardian's case, below.
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  liveChildren.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of liveChildren) c.kill('SIGTERM');
    });
  }
}

/** The word before the redis pid in a guardian's argv, by which it can be found. */
export const REDIS_GUARDIAN_NAME = 'conclave-redis-guardian';

/**
 * A shell that holds the read end of a pipe whose write end only this process has, and sends
 * SIGTERM to the redis-server when the pipe closes: when this process dies, however it dies
 * (kill -9 included), the kernel closes the pipe. Terminal signals are ignored, so a closed
 * terminal or a Ctrl-C leaves the orderly shutdown to this process. `sh` rather than a second
 * Node.js process: a few hundred KiB instead of tens of MiB.
 */
const GUARDIAN_SCRIPT = 'trap "" HUP INT; while read -r _; do :; done; kill -TERM "$1" 2>/dev/null';

function spawnGuardian(redisPid: number): ChildProcess {
  const guardian = spawn('/bin/sh', ['-c', GUARDIAN_SCRIPT, REDIS_GUARDIAN_NAME, String(redisPid)], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  // Ours to write and never written: it only has to stay open while we live.
  guardian.stdin?.on('error', () => undefined);
  guardian.on('error', () => undefined);
  guardian.unref();
  return guardian;
}

/** The pid file redis-server writes in its dir, so that a later start can find one left running. */
const PID_FILE = 'redis.pid';

/** The config file, in the Redis dir, that hands redis-server its password: argv is world-readable in /proc. */
export const REDIS_AUTH_CONF_FILE = 'redis-auth.conf';

/** The Unix socket, in the 0700 Redis dir, over which the launcher alone checks readiness and shuts Redis down. */
export const REDIS_SOCKET_FILE = 'redis.sock';

/** The longest socket path every platform takes: sun_path is 104 bytes on macOS (108 on Linux), NUL included. */
const MAX_SOCKET_PATH_BYTES = 103;

/**
 * REDIS_SOCKET_FILE in `dir`, or when that path is too long for a socket, in a fresh 0700 dir
 * under the system temp dir (`ownDir`, removed by the caller when done).
 */
function socketPathFor(dir: string): { socketPath: string; ownDir: string | undefined } {
  const inDir = join(dir, REDIS_SOCKET_FILE);
  if (Buffer.byteLength(inDir) <= MAX_SOCKET_PATH_BYTES) return { socketPath: inDir, ownDir: undefined };
  const ownDir = mkdtempSync(join(tmpdir(), 'conclave-redis-'));
  return { socketPath: join(ownDir, REDIS_SOCKET_FILE), ownDir };
}

/**
 * A redis-server still running on `dir` from an earlier run (its orchestrator died before the
 * guardian existed, or the guardian was killed too): the caller holds the data dir lock, so no
 * live orchestrator owns it. It is stopped before a new one opens the same AOF: SIGTERM, on which
 * Redis flushes its AOF, and SIGKILL after REDIS_STOP_GRACE_MS. Only on Linux, where /proc shows
 * that the pid really is a redis-server working in this very dir.
 */
async function stopLeftoverRedis(dir: string, logger: Logger | undefined): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dir, PID_FILE), 'utf8').trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return;
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    if (!comm.startsWith('redis-server') || realpathSync(`/proc/${pid}/cwd`) !== realpathSync(dir)) return;
  } catch {
    return;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  let signal: NodeJS.Signals = 'SIGTERM';
  if (!(await exitsWithin(pid, REDIS_STOP_GRACE_MS))) {
    signal = 'SIGKILL';
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
    await exitsWithin(pid, REDIS_STOP_GRACE_MS);
  }
  logger?.failure(new ConclaveError('ORCH-STATE-711', { data: { pid, dir, signal } }), {}, 'warn');
}

async function exitsWithin(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isProcessRunning(pid)) return true;
    await sleep(PING_INTERVAL_MS);
  }
  return !isProcessRunning(pid);
}

/** A Redis config-file string: double-quoted, `"` and `\` escaped, every byte outside printable ASCII as \xHH. */
export function redisConfigString(value: string): string {
  let out = '"';
  for (const byte of Buffer.from(value, 'utf8')) {
    if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`;
    else if (byte >= 0x20 && byte <= 0x7e) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

/**
 * Writes REDIS_AUTH_CONF_FILE with mode 0600 (durably, through a private temp file: no reader
 * ever sees it half written or with wider bits), or removes it when there is no password.
 */
async function writeAuthConf(dir: string, password: string | undefined): Promise<string | undefined> {
  const path = join(dir, REDIS_AUTH_CONF_FILE);
  if (password === undefined) {
    rmSync(path, { force: true });
    return undefined;
  }
  await writeFileDurable(
    path, `# Rewritten at each start by the Conclave redis launcher; mode 0600, it holds the password.\nrequirepass ${redisConfigString(password)}\n`,
    { mode: 0o600 },
  );
  return path;
}

/** What every start of one handle's redis-server shares. */
interface StartContext {
  bin: string;
  dir: string;
  logFile: string;
  /** REDIS_AUTH_CONF_FILE when there is a password. */
  authConf: string | undefined;
  /** The Unix socket (mode 0700) the launcher talks to; the TCP port is only for clients. */
  socketPath: string;
  timeoutMs: number;
  options: LaunchRedisOptions;
}

function spawnRedis(ctx: StartContext, port: number, stderrTail: string[]): Attempt {
  const args = [
    // The config file first: the flags after it override what it says, and it says only requirepass.
    ...(ctx.authConf !== undefined ? [ctx.authConf] : []),
    '--port', String(port),
    '--bind', REDIS_HOST,
    '--dir', ctx.dir,
    '--appendonly', ctx.options.appendOnly === false ? 'no' : 'yes',
    '--save', '',
    '--daemonize', 'no',
    '--logfile', ctx.logFile,
    '--pidfile', join(ctx.dir, PID_FILE),
    '--unixsocket', ctx.socketPath,
    '--unixsocketperm', '700',
  ];
  // Its own process group: a Ctrl-C or a closed terminal reaches this process, which stops
  // Redis in order, and not Redis directly, which would vanish under a still-running orchestrator.
  const child = spawn(ctx.bin, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  track(child);
  const guardian = child.pid !== undefined ? spawnGuardian(child.pid) : undefined;
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderrTail.push(chunk);
    if (stderrTail.length > 20) stderrTail.shift();
  });
  const exited = new Promise<number | null>((resolveExit) => {
    child.once('exit', (code) => {
      liveChildren.delete(child);
      guardian?.kill('SIGTERM');
      resolveExit(code);
    });
    // spawn failures (EACCES) emit 'error' and may never emit 'exit'.
    child.once('error', () => {
      liveChildren.delete(child);
      resolveExit(null);
    });
  });
  return { child, exited, port };
}

/** Waits for PONG; resolves 'exited' if the process dies first. */
async function waitReady(attempt: Attempt, ctx: StartContext): Promise<'ready' | 'exited' | 'timeout'> {
  let gone = false;
  void attempt.exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + ctx.timeoutMs;
  while (Date.now() < deadline) {
    if (gone) return 'exited';
    // Raced against the exit: a PING that finds no answer may wait its full timeout.
    const answered = await Promise.race([
      answersPing(ctx.socketPath, ctx.options.password, attempt.child.pid),
      attempt.exited.then(() => false),
    ]);
    if (answered) return gone ? 'exited' : 'ready';
    await sleep(PING_INTERVAL_MS);
  }
  return gone ? 'exited' : 'timeout';
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** What redis.log gained after `offset`: this attempt's lines only, not an earlier run's. */
function textSince(path: string, offset: number): string {
  try {
    return readFileSync(path).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

type StartOutcome =
  | { ok: true; attempt: Attempt }
  /** `portTaken`: this attempt's own output says the port was in use. */
  | { ok: false; error: ConclaveError; portTaken: boolean };

/** Starts redis-server on `requestedPort`, or on a free port (another one after a lost race) when it is 0. */
async function startServer(ctx: StartContext, requestedPort: number): Promise<StartOutcome> {
  const autoPort = requestedPort === 0;
  for (let attemptNo = 1; ; attemptNo += 1) {
    const port = autoPort ? await findFreePort() : requestedPort;
    const stderrTail: string[] = [];
    const logOffset = fileSize(ctx.logFile);
    const attempt = spawnRedis(ctx, port, stderrTail);
    const outcome = await waitReady(attempt, ctx);
    if (outcome === 'ready') return { ok: true, attempt };

    if (outcome === 'timeout') {
      attempt.child.kill('SIGKILL');
      await attempt.exited;
    }
    const portTaken = outcome === 'exited' && ADDRESS_IN_USE.test(`${textSince(ctx.logFile, logOffset)}\n${stderrTail.join('')}`);
    if (portTaken && autoPort && attemptNo < PORT_ATTEMPTS) {
      ctx.options.logger?.debug('STATE', 'redis-server port taken, trying another', { port, attempt: attemptNo });
      continue;
    }
    const tail = [tailOfFile(ctx.logFile), stderrTail.join('').trim()].filter((t) => t !== '').join('\n');
    const exitCode = attempt.child.exitCode;
    const error = new ConclaveError('ORCH-STATE-702', {
      detail:
        (outcome === 'timeout' ? `no PONG within ${ctx.timeoutMs} ms` : `exit code ${String(exitCode ?? attempt.child.signalCode)}`) +
        (tail ? `; redis.log tail:\n${tail}` : ` (no output in ${ctx.logFile})`),
      data: { bin: ctx.bin, dir: ctx.dir, port, exitCode },
    });
    return { ok: false, error, portTaken };
  }
}

/**
 * Starts a private redis-server bound to 127.0.0.1 and resolves once it
 * answers PING. Throws ORCH-STATE-701 when there is no binary and
 * ORCH-STATE-702 (with the tail of redis.log) when it fails to start.
 */
export async function launchRedis(options: LaunchRedisOptions): Promise<RedisServerHandle> {
  const bin = findRedisServer(options.bin);
  const dir = resolve(options.dir);
  // The AOF holds every job and enrollment record: this user's alone, like the data dir around it.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  await stopLeftoverRedis(dir, options.logger);
  const authConf = await writeAuthConf(dir, options.password);
  const { socketPath, ownDir } = socketPathFor(dir);
  const removeOwnDir = (): void => {
    if (ownDir !== undefined) rmSync(ownDir, { recursive: true, force: true });
  };
  const ctx: StartContext = {
    bin, dir, options, socketPath, authConf,
    logFile: join(dir, 'redis.log'),
    timeoutMs: options.startTimeoutMs ?? DEFAULT_REDIS_START_TIMEOUT_MS,
  };
  const outcome = await startServer(ctx, options.port ?? 0);
  if (!outcome.ok) {
    removeOwnDir();
    throw outcome.error;
  }
  const handle = makeHandle(ctx, outcome.attempt);
  void handle.exited.then(removeOwnDir);
  return handle;
}

/** SHUTDOWN NOSAVE (SIGTERM if that fails; the AOF is flushed either way), SIGKILL after the grace. */
async function shutdown(attempt: Attempt, ctx: StartContext): Promise<void> {
  const { child, exited } = attempt;
  try {
    // SHUTDOWN closes the connection without a reply when it succeeds.
    const replies = await sendCommands({ path: ctx.socketPath }, [...authCommands(ctx.options.password), ['SHUTDOWN', 'NOSAVE']]);
    if (replies.some((r) => r.startsWith('-'))) child.kill('SIGTERM');
  } catch {
    child.kill('SIGTERM');
  }
  const grace = setTimeout(() => child.kill('SIGKILL'), REDIS_STOP_GRACE_MS);
  await exited;
  clearTimeout(grace);
}

/**
 * The handle over one redis-server, or with restartOnExit over its successive processes on one
 * port and dir: the URL stays the same, so clients (ioredis) just reconnect.
 */
function makeHandle(ctx: StartContext, first: Attempt): RedisServerHandle {
  const { dir, options } = ctx;
  const { port } = first;
  const password = options.password;
  const url =
    password === undefined ? `redis://${REDIS_HOST}:${port}` : `redis://:${encodeURIComponent(password)}@${REDIS_HOST}:${port}`;
  const logger = options.logger;
  let current = first;
  let currentExited = false;
  let startedAt = Date.now();
  let restarts = 0;
  let stopping = false;
  let stopped: Promise<void> | undefined;
  const stopRequested = new AbortController();
  const backoff = new Backoff({ baseMs: REDIS_RESTART_BASE_MS, capMs: REDIS_RESTART_CAP_MS });
  let resolveExited: (code: number | null) => void = () => undefined;
  const exited = new Promise<number | null>((resolveExit) => {
    resolveExited = resolveExit;
  });

  const restart = async (dead: Attempt, code: number | null): Promise<void> => {
    // One that ran a while died of something new: start again from the shortest delay.
    if (Date.now() - startedAt >= RESTART_BACKOFF_RESET_MS) backoff.reset();
    let delayMs = Math.round(backoff.next());
    logger?.failure(
      new ConclaveError('ORCH-STATE-708', { data: { pid: dead.child.pid, port, dir, code, signal: dead.child.signalCode } }),
      { delayMs },
      'warn',
    );
    for (;;) {
      try {
        await sleep(delayMs, stopRequested.signal);
      } catch {
        resolveExited(code);
        return;
      }
      const outcome = await startServer(ctx, port);
      if (outcome.ok && stopping) {
        await shutdown(outcome.attempt, ctx);
        resolveExited(await outcome.attempt.exited);
        return;
      }
      if (outcome.ok) {
        current = outcome.attempt;
        currentExited = false;
        startedAt = Date.now();
        restarts += 1;
        logger?.info('STATE', 'redis-server restarted', { pid: current.child.pid, port, restarts });
        watch(current);
        return;
      }
      if (stopping) {
        resolveExited(code);
        return;
      }
      delayMs = Math.round(backoff.next());
      const failure = outcome.portTaken
        ? new ConclaveError('ORCH-STATE-709', { detail: `${REDIS_HOST}:${port} is in use`, data: { port, dir } })
        : outcome.error;
      logger?.failure(failure, { delayMs }, 'error');
    }
  };

  const watch = (attempt: Attempt): void => {
    void attempt.exited.then((code) => {
      currentExited = true;
      if (stopping || options.restartOnExit !== true) {
        if (!stopping) logger?.warn('STATE', 'redis-server exited', { pid: attempt.child.pid, port, code, signal: attempt.child.signalCode });
        resolveExited(code);
        return;
      }
      void restart(attempt, code);
    });
  };
  watch(first);
  logger?.info('STATE', 'redis-server started', {
    url: maskUrlCredentials(url), pid: first.child.pid, dir, appendOnly: options.appendOnly !== false, restartOnExit: options.restartOnExit === true,
  });

  const stop = async (): Promise<void> => {
    stopping = true;
    stopRequested.abort();
    const last = current;
    if (!currentExited) await shutdown(last, ctx);
    await exited;
    logger?.info('STATE', 'redis-server stopped', { pid: last.child.pid, port });
  };

  return {
    url,
    host: REDIS_HOST,
    port,
    dir,
    exited,
    get pid(): number {
      return current.child.pid ?? -1;
    },
    get restarts(): number {
      return restarts;
    },
    stop(): Promise<void> {
      stopped ??= stop();
      return stopped;
    },
    kill(signal: NodeJS.Signals = 'SIGKILL'): void {
      if (!currentExited) current.child.kill(signal);
    },
  };
}

/** Pids of the guardians watching redis-server `redisPid` (Linux; one while it runs, none after). */
export function redisGuardianPids(redisPid: number): number[] {
  return pidsWithArgs(REDIS_GUARDIAN_NAME, String(redisPid));
}
