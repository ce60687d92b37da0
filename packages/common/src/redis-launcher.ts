import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { sleep } from './backoff.js';
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
  /** Sets `requirepass`; the handle's url then carries it. */
  password?: string;
  logger?: Logger;
  /** @default DEFAULT_REDIS_START_TIMEOUT_MS (15 s) */
  startTimeoutMs?: number;
}

export interface RedisServerHandle {
  /** `redis://127.0.0.1:<port>`, or `redis://:<password>@127.0.0.1:<port>`: never log it unmasked. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  readonly dir: string;
  /** SHUTDOWN NOSAVE (SIGTERM if that fails), SIGKILL after 5 s; resolves once the process is gone. */
  stop(): Promise<void>;
  /** Sends a signal without waiting, to simulate a crash. @default 'SIGKILL' */
  kill(signal?: NodeJS.Signals): void;
  /** The exit code, or null when a signal ended it. Never rejects. */
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
  return new Promise((resolveReplies, reject) => {
    const socket = createConnection({ host, port });
    let buffer = Buffer.alloc(0);
    const replies: string[] = [];
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolveReplies(replies);
    };
    const timer = setTimeout(() => finish(new Error(`no reply from redis at ${host}:${port} in ${timeoutMs} ms`)), timeoutMs);
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
 * Resolves true when the server answers PONG and is the process we started:
 * when our redis-server lost the port race, another one may be answering there.
 */
async function answersPing(port: number, password: string | undefined, pid: number | undefined): Promise<boolean> {
  try {
    const auth = authCommands(password);
    const replies = await sendRedisCommands(REDIS_HOST, port, [...auth, ['PING'], ['INFO', 'server']]);
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

/**
 * A redis-server still running on `dir` from an earlier run (its orchestrator died before the
 * guardian existed, or the guardian was killed too): the caller holds the data dir lock, so no
 * live orchestrator owns it. It is stopped before a new one opens the same AOF. Only on Linux,
 * where /proc shows that the pid really is a redis-server working in this very dir.
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
  logger?.warn('STATE', 'stopping a redis-server left running on this data dir by an earlier run', { pid, dir });
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + REDIS_STOP_GRACE_MS;
  while (Date.now() < deadline) {
    if (!isProcessRunning(pid)) return;
    await sleep(PING_INTERVAL_MS);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

function spawnRedis(bin: string, dir: string, port: number, options: LaunchRedisOptions, stderrTail: string[]): Attempt {
  const args = [
    '--port', String(port),
    '--bind', REDIS_HOST,
    '--dir', dir,
    '--appendonly', options.appendOnly === false ? 'no' : 'yes',
    '--save', '',
    '--daemonize', 'no',
    '--logfile', join(dir, 'redis.log'),
    '--pidfile', join(dir, PID_FILE),
  ];
  if (options.password !== undefined) args.push('--requirepass', options.password);
  // Its own process group: a Ctrl-C or a closed terminal reaches this process, which stops
  // Redis in order, and not Redis directly, which would vanish under a still-running orchestrator.
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
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
async function waitReady(attempt: Attempt, password: string | undefined, timeoutMs: number): Promise<'ready' | 'exited' | 'timeout'> {
  let gone = false;
  void attempt.exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone) return 'exited';
    if (await answersPing(attempt.port, password, attempt.child.pid)) return gone ? 'exited' : 'ready';
    await sleep(PING_INTERVAL_MS);
  }
  return gone ? 'exited' : 'timeout';
}

/**
 * Starts a private redis-server bound to 127.0.0.1 and resolves once it
 * answers PING. Throws ORCH-STATE-701 when there is no binary and
 * ORCH-STATE-702 (with the tail of redis.log) when it fails to start.
 */
export async function launchRedis(options: LaunchRedisOptions): Promise<RedisServerHandle> {
  const bin = findRedisServer(options.bin);
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  await stopLeftoverRedis(dir, options.logger);
  const logFile = join(dir, 'redis.log');
  const timeoutMs = options.startTimeoutMs ?? DEFAULT_REDIS_START_TIMEOUT_MS;
  const autoPort = (options.port ?? 0) === 0;

  for (let attemptNo = 1; ; attemptNo += 1) {
    const port = autoPort ? await findFreePort() : (options.port as number);
    const stderrTail: string[] = [];
    const attempt = spawnRedis(bin, dir, port, options, stderrTail);
    const outcome = await waitReady(attempt, options.password, timeoutMs);
    if (outcome === 'ready') return makeHandle(attempt, dir, options);

    if (outcome === 'timeout') {
      attempt.child.kill('SIGKILL');
      await attempt.exited;
    }
    const tail = [tailOfFile(logFile), stderrTail.join('').trim()].filter((t) => t !== '').join('\n');
    if (outcome === 'exited' && autoPort && attemptNo < PORT_ATTEMPTS && ADDRESS_IN_USE.test(tail)) {
      options.logger?.debug('STATE', 'redis-server port taken, trying another', { port, attempt: attemptNo });
      continue;
    }
    const exitCode = attempt.child.exitCode;
    throw new ConclaveError('ORCH-STATE-702', {
      detail:
        (outcome === 'timeout' ? `no PONG within ${timeoutMs} ms` : `exit code ${String(exitCode ?? attempt.child.signalCode)}`) +
        (tail ? `; redis.log tail:\n${tail}` : ` (no output in ${logFile})`),
      data: { bin, dir, port, exitCode },
    });
  }
}

function makeHandle(attempt: Attempt, dir: string, options: LaunchRedisOptions): RedisServerHandle {
  const { child, exited, port } = attempt;
  const password = options.password;
  const url =
    password === undefined ? `redis://${REDIS_HOST}:${port}` : `redis://:${encodeURIComponent(password)}@${REDIS_HOST}:${port}`;
  const logger = options.logger;
  let stopping = false;
  let stopped: Promise<void> | undefined;
  let done = false;
  void exited.then((code) => {
    done = true;
    if (!stopping) {
      logger?.warn('STATE', 'redis-server exited', { pid: child.pid, port, code, signal: child.signalCode });
    }
  });
  logger?.info('STATE', 'redis-server started', { url: maskUrlCredentials(url), pid: child.pid, dir, appendOnly: options.appendOnly !== false });

  const stop = async (): Promise<void> => {
    stopping = true;
    if (done) return;
    try {
      // SHUTDOWN closes the connection without a reply when it succeeds; AOF is still flushed.
      const replies = await sendRedisCommands(REDIS_HOST, port, [...authCommands(password), ['SHUTDOWN', 'NOSAVE']]);
      if (replies.some((r) => r.startsWith('-'))) child.kill('SIGTERM');
    } catch {
      child.kill('SIGTERM');
    }
    const grace = setTimeout(() => child.kill('SIGKILL'), REDIS_STOP_GRACE_MS);
    await exited;
    clearTimeout(grace);
    logger?.info('STATE', 'redis-server stopped', { pid: child.pid, port });
  };

  return {
    url,
    host: REDIS_HOST,
    port,
    pid: child.pid ?? -1,
    dir,
    exited,
    stop(): Promise<void> {
      stopped ??= stop();
      return stopped;
    },
    kill(signal: NodeJS.Signals = 'SIGKILL'): void {
      if (!done) child.kill(signal);
    },
  };
}

/** Pids of the guardians watching redis-server `redisPid` (Linux; one while it runs, none after). */
export function redisGuardianPids(redisPid: number): number[] {
  return pidsWithArgs(REDIS_GUARDIAN_NAME, String(redisPid));
}
