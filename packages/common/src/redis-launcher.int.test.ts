import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConclaveError } from './errors/conclave-error.js';
import {
  REDIS_AUTH_CONF_FILE, REDIS_RESTART_CAP_MS, REDIS_SOCKET_FILE, findFreePort, findRedisServer, launchRedis, redisConfigString, redisGuardianPids, sendRedisCommands,
  type RedisServerHandle,
} from './redis-launcher.js';
import { isProcessRunning } from './process-state.js';
import { captureLogger } from './winston-logger.js';

const root = mkdtempSync(join(tmpdir(), 'conclave-redis-'));
const handles: RedisServerHandle[] = [];
let n = 0;

function freshDir(): string {
  n += 1;
  return join(root, `r${n}`);
}

async function launch(options: Partial<Parameters<typeof launchRedis>[0]> = {}): Promise<RedisServerHandle> {
  const handle = await launchRedis({ dir: freshDir(), ...options });
  handles.push(handle);
  return handle;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

afterAll(async () => {
  await Promise.all(handles.map((h) => h.stop()));
  rmSync(root, { recursive: true, force: true });
});

const DIST_INDEX = new URL('../dist/index.js', import.meta.url).href;
const CHILD_TIMEOUT_MS = 10_000;
/** How long a guardian may take to notice that its orchestrator died and to stop Redis. */
const GUARDIAN_MS = 5_000;

/**
 * An orchestrator stand-in: launches Redis on the dir through the built module (packages/common/dist,
 * so `pnpm build` first), reports pid and port over IPC and stays alive. A constant string, values
 * through argv, like the lock test's child: this package has no fixture scripts.
 */
const CHILD_SCRIPT = `
const [distUrl, dir] = process.argv.slice(1);
const { launchRedis } = await import(distUrl);
const redis = await launchRedis({ dir });
process.send({ pid: redis.pid, port: redis.port });
`;

const children: ChildProcess[] = [];
/** Redis servers the children leave behind on purpose, SIGKILLed after each test if still there. */
const strays: number[] = [];

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const pid of strays.splice(0)) if (isProcessRunning(pid)) process.kill(pid, 'SIGKILL');
});

/** A child process that launched Redis on `dir`, with that redis-server's pid and port. */
async function launchInChild(dir: string): Promise<{ child: ChildProcess; exited: Promise<unknown>; pid: number; port: number }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD_SCRIPT, DIST_INDEX, dir], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const report = await new Promise<{ pid: number; port: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child sent nothing in ${CHILD_TIMEOUT_MS} ms: ${stderr}`)), CHILD_TIMEOUT_MS);
    child.once('message', (message) => {
      clearTimeout(timer);
      resolve(message as { pid: number; port: number });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited (${String(code)}) before reporting: ${stderr}`));
    });
  });
  strays.push(report.pid);
  return { child, exited, ...report };
}


/** Waits until none of `pids` is alive or `timeoutMs` passes; returns those still alive ([] is the good outcome). */
async function stillAliveAfter(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isProcessRunning) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
  return pids.filter(isProcessRunning);
}


/** Pids of the redis-servers working in `dir` (Linux /proc: their cwd is their --dir). */
function redisServersOn(dir: string): number[] {
  const wanted = realpathSync(dir);
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/comm`, 'utf8').startsWith('redis-server')) continue;
      if (realpathSync(`/proc/${entry}/cwd`) === wanted && isProcessRunning(Number(entry))) found.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/** Whether a TCP connection to host:port is accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The one guardian of `redisPid`, alive. */
function guardianOf(redisPid: number): number {
  const guardians = redisGuardianPids(redisPid);
  expect(guardians).toHaveLength(1);
  const guardian = guardians[0] ?? -1;
  expect(isProcessRunning(guardian)).toBe(true);
  return guardian;
}

describe('no redis-server outlives its launcher', { timeout: 30_000 }, () => {
  it('the launching process is killed with SIGKILL: its guardian stops Redis', async () => {
    const { child, exited, pid } = await launchInChild(freshDir());
    const guardian = guardianOf(pid);
    expect(isProcessRunning(pid)).toBe(true);
    child.kill('SIGKILL');
    await exited;
    expect(await stillAliveAfter([pid, guardian], GUARDIAN_MS)).toEqual([]);
  });

  it('a redis-server left running on the dir (guardian and launcher both killed) is stopped by the next launch, which logs it', async () => {
    const dir = freshDir();
    const old = await launchInChild(dir);
    expect(await sendRedisCommands('127.0.0.1', old.port, [['SET', 'left', 'over']])).toEqual(['+OK']);
    const guardian = guardianOf(old.pid);
    process.kill(guardian, 'SIGKILL');
    expect(await stillAliveAfter([guardian], GUARDIAN_MS)).toEqual([]);
    old.child.kill('SIGKILL');
    await old.exited;
    // Really left over: nothing stops it any more, and it still serves.
    expect(await stillAliveAfter([old.pid], 500)).toEqual([old.pid]);
    expect(await sendRedisCommands('127.0.0.1', old.port, [['PING']])).toEqual(['+PONG']);

    const { logger, lines } = captureLogger('ORCH');
    const redis = await launch({ dir, logger });
    expect(isProcessRunning(old.pid)).toBe(false);
    expect(redis.pid).not.toBe(old.pid);
    expect(lines.filter((l) => / WARN {2}ORCH-STATE-711 stopped a redis-server left running on the data dir by an earlier run /.test(l))).toEqual([
      expect.stringMatching(new RegExp(`pid=${old.pid} .*signal=SIGTERM`)),
    ]);
    expect(redisServersOn(dir)).toEqual([redis.pid]);
    // Stopped with SIGTERM (its own shutdown, AOF flushed): both write to the dir's redis.log.
    expect(readFileSync(join(dir, 'redis.log'), 'utf8').match(/Received SIGTERM scheduling shutdown/g)).toHaveLength(1);
    // The new one opened the same AOF.
    expect(await sendRedisCommands(redis.host, redis.port, [['PING'], ['GET', 'left']])).toEqual(['+PONG', 'over']);
    expect(guardianOf(redis.pid)).toBeGreaterThan(0);
  });

  it('stop() ends the guardian too', async () => {
    const redis = await launch();
    const guardian = guardianOf(redis.pid);
    await redis.stop();
    expect(await stillAliveAfter([guardian], 2_000)).toEqual([]);
    expect(redisGuardianPids(redis.pid)).toEqual([]);
  });

  it('a redis-server that dies (kill()) takes its guardian with it', async () => {
    const redis = await launch();
    const guardian = guardianOf(redis.pid);
    redis.kill();
    await redis.exited;
    expect(await stillAliveAfter([guardian], 2_000)).toEqual([]);
  });
});

describe('launchRedis', () => {
  it('starts on a free port and answers PING', async () => {
    const { logger, lines } = captureLogger('ORCH');
    const redis = await launch({ logger });
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(redis.port).toBeGreaterThan(0);
    expect(redis.pid).toBeGreaterThan(0);
    expect(await sendRedisCommands(redis.host, redis.port, [['PING']])).toEqual(['+PONG']);
    expect(lines.some((l) => / INFO {2}ORCH-STATE redis-server started /.test(l))).toBe(true);
  });

  it('writes an AOF with appendOnly and none without', async () => {
    const aof = await launch();
    await sendRedisCommands(aof.host, aof.port, [['SET', 'k', 'v']]);
    // Redis 7 keeps a multi-part AOF under appendonlydir/.
    expect(existsSync(join(aof.dir, 'appendonlydir'))).toBe(true);
    expect(readdirSync(join(aof.dir, 'appendonlydir')).some((f) => f.includes('.aof'))).toBe(true);
    const plain = await launch({ appendOnly: false });
    expect(existsSync(join(plain.dir, 'appendonlydir'))).toBe(false);
  });

  it('requires the password and masks it in logs', async () => {
    const { logger, lines } = captureLogger('ORCH');
    const redis = await launch({ password: 'pa ss@word', logger });
    expect(redis.url).toBe(`redis://:${encodeURIComponent('pa ss@word')}@127.0.0.1:${redis.port}`);
    expect((await sendRedisCommands(redis.host, redis.port, [['PING']]))[0]).toMatch(/^-NOAUTH/);
    expect(await sendRedisCommands(redis.host, redis.port, [['AUTH', 'pa ss@word'], ['PING']])).toEqual(['+OK', '+PONG']);
    await redis.stop();
    const text = lines.join('\n');
    expect(text).toContain('redis-server stopped');
    expect(text).not.toContain('pa ss');
    expect(text).not.toContain(encodeURIComponent('pa ss@word'));
  });

  it('hands the password over in a 0600 config file, never on the command line, and listens on 127.0.0.1 only', async () => {
    const password = 'cmdline-secret "quoted" \\ and é';
    // Redis rewrites its process title once it runs, so the argv it was given is caught on the way in.
    const argvFile = join(root, 'argv.txt');
    const wrapper = join(root, 'redis-server-recording-argv');
    writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\n' "$@" > '${argvFile}'\nexec '${findRedisServer()}' "$@"\n`, { mode: 0o700 });
    const redis = await launch({ password, bin: wrapper });
    const argv = readFileSync(argvFile, 'utf8');
    expect(argv).toContain(`${join(redis.dir, REDIS_AUTH_CONF_FILE)}\n--port\n`);
    expect(argv).not.toContain('cmdline-secret');
    expect(argv).not.toContain('requirepass');
    expect(readFileSync(`/proc/${redis.pid}/cmdline`, 'utf8')).not.toContain('cmdline-secret');
    const ps = spawnSync('ps', ['-ww', '-o', 'args=', '-p', String(redis.pid)], { encoding: 'utf8' });
    if (ps.status === 0) expect(ps.stdout).not.toContain('cmdline-secret');
    const conf = join(redis.dir, REDIS_AUTH_CONF_FILE);
    expect(statSync(conf).mode & 0o777).toBe(0o600);
    expect(statSync(redis.dir).mode & 0o777).toBe(0o700);
    expect(readFileSync(conf, 'utf8')).toContain(`requirepass ${redisConfigString(password)}`);
    // The quoting held: Redis took exactly this password.
    expect((await sendRedisCommands(redis.host, redis.port, [['PING']]))[0]).toMatch(/^-NOAUTH/);
    expect(await sendRedisCommands(redis.host, redis.port, [['AUTH', password], ['PING']])).toEqual(['+OK', '+PONG']);
    // Bound to 127.0.0.1 itself, not to every address: another loopback address is refused.
    expect(await accepts('127.0.0.1', redis.port)).toBe(true);
    expect(await accepts('127.0.0.2', redis.port)).toBe(false);
  });

  it('removes the config file when started again without a password', async () => {
    const dir = freshDir();
    const secured = await launch({ dir, password: 'first-run-password' });
    await secured.stop();
    const open = await launch({ dir });
    expect(existsSync(join(dir, REDIS_AUTH_CONF_FILE))).toBe(false);
    expect(await sendRedisCommands(open.host, open.port, [['PING']])).toEqual(['+PONG']);
  });

  it('stop() ends the process and frees the port', async () => {
    const redis = await launch();
    await redis.stop();
    expect(await redis.exited).toBe(0);
    expect(await portIsFree(redis.port)).toBe(true);
    await redis.stop();
  });

  it('kill() ends it at once and exited resolves', async () => {
    const { logger, lines } = captureLogger('ORCH');
    const redis = await launch({ logger });
    redis.kill();
    expect(await redis.exited).toBeNull();
    expect(lines.some((l) => / WARN {2}ORCH-STATE redis-server exited .*signal=SIGKILL/.test(l))).toBe(true);
  });

  it('fails with 702 and the log tail when the port is taken', async () => {
    const first = await launch();
    const err = await launchRedis({ dir: freshDir(), port: first.port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConclaveError);
    expect((err as ConclaveError).code).toBe('ORCH-STATE-702');
    expect((err as ConclaveError).data).toMatchObject({ port: first.port });
    expect((err as ConclaveError).message).toMatch(/redis.log tail:[\s\S]*(Address already in use|Could not create server TCP)/);
  });

  it('never hands its password to a process squatting its fixed port', async () => {
    const password = 'squatter-must-not-see-this';
    const squatter = await recordingListener(await findFreePort());
    try {
      const err = await launchRedis({ dir: freshDir(), port: squatter.port, password }).catch((e: unknown) => e);
      expect((err as ConclaveError).code).toBe('ORCH-STATE-702');
    } finally {
      await squatter.close();
    }
    expect(squatter.received()).not.toContain(password);
  });

  it('checks readiness over a 0700 Unix socket in its dir, which survives no stop()', async () => {
    const redis = await launch({ password: 'socket-pw' });
    const socket = join(redis.dir, REDIS_SOCKET_FILE);
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o700);
    await redis.stop();
    expect(await redis.exited).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });

  it('puts the socket in a private temp dir when the dir is too deep for a socket path, removed at stop()', async () => {
    const dir = join(freshDir(), 'd'.repeat(120));
    const socketDirs = (): string[] =>
      readdirSync(tmpdir()).filter((name) => existsSync(join(tmpdir(), name, REDIS_SOCKET_FILE)));
    const before = socketDirs();
    const redis = await launch({ dir, password: 'deep-pw' });
    expect(existsSync(join(dir, REDIS_SOCKET_FILE))).toBe(false);
    expect(await sendRedisCommands(redis.host, redis.port, [['AUTH', 'deep-pw'], ['PING']])).toEqual(['+OK', '+PONG']);
    const added = socketDirs().filter((name) => !before.includes(name));
    expect(added).toEqual([expect.stringMatching(/^conclave-redis-/)]);
    const socketDir = join(tmpdir(), added[0] ?? '');
    expect(statSync(socketDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(socketDir, REDIS_SOCKET_FILE)).isSocket()).toBe(true);
    await redis.stop();
    await waitFor('the private socket dir removed', () => !existsSync(socketDir));
  });

  it('gives 701 with the install hint when the binary is missing', async () => {
    const err = await launchRedis({ dir: freshDir(), bin: join(root, 'no-such-redis-server') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConclaveError);
    expect((err as ConclaveError).code).toBe('ORCH-STATE-701');
    expect((err as ConclaveError).entry.recovery).toContain('apt-get install redis-server');
    expect((err as ConclaveError).entry.recovery).toContain('brew install redis');
    const searched = findRedisServerOrError({ pathEnv: root, fallbackDirs: [join(root, 'bin')] });
    expect(searched).toBeInstanceOf(ConclaveError);
    expect((searched as ConclaveError).code).toBe('ORCH-STATE-701');
    expect((searched as ConclaveError).message).toContain('apt-get install redis-server');
    expect(findRedisServer()).toMatch(/redis-server$/);
  });
});

describe('launchRedis with restartOnExit', { timeout: 30_000 }, () => {
  it('restarts a redis-server killed with SIGKILL on the same port and dir, data and password kept, with ORCH-STATE-708', async () => {
    const { logger, lines } = captureLogger('ORCH');
    const redis = await launch({ restartOnExit: true, password: 'restart-pw', logger });
    const auth = ['AUTH', 'restart-pw'];
    expect(await sendRedisCommands(redis.host, redis.port, [auth, ['SET', 'kept', 'yes']])).toEqual(['+OK', '+OK']);
    const first = redis.pid;
    const guardian = guardianOf(first);
    process.kill(first, 'SIGKILL');
    await waitFor('a restarted redis-server', () => redis.restarts === 1);
    expect(redis.pid).not.toBe(first);
    expect(isProcessRunning(first)).toBe(false);
    expect(await sendRedisCommands(redis.host, redis.port, [auth, ['GET', 'kept']])).toEqual(['+OK', 'yes']);
    expect((await sendRedisCommands(redis.host, redis.port, [['PING']]))[0]).toMatch(/^-NOAUTH/);
    expect(redisServersOn(redis.dir)).toEqual([redis.pid]);
    // The old guardian went with the old process; the new process has its own.
    expect(await stillAliveAfter([guardian], 2_000)).toEqual([]);
    guardianOf(redis.pid);
    const warnings = lines.filter((l) => / WARN {2}ORCH-STATE-708 embedded redis-server exited; restarting it /.test(l));
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`pid=${first} port=${redis.port} .*signal=SIGKILL .*delayMs=\\d+`))]);
    const delayMs = Number(/delayMs=(\d+)/.exec(warnings[0] ?? '')?.[1]);
    expect(delayMs).toBeLessThanOrEqual(REDIS_RESTART_CAP_MS);
    expect(lines.some((l) => / INFO {2}ORCH-STATE redis-server restarted .*restarts=1/.test(l))).toBe(true);
    expect(lines.join('\n')).not.toContain('restart-pw');

    // stop() is final: no restart after it, and exited resolves.
    await redis.stop();
    expect(await redis.exited).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, REDIS_RESTART_CAP_MS / 4));
    expect(redisServersOn(redis.dir)).toEqual([]);
    expect(redis.restarts).toBe(1);
  });

  it('says ORCH-STATE-709 while another process holds the port, never handing it the password, and restarts once it is free', async () => {
    const { logger, lines } = captureLogger('ORCH');
    const password = 'restart-squatter-must-not-see-this';
    const redis = await launch({ restartOnExit: true, password, logger });
    let squatter: Recorder | undefined;
    // The port must be taken between the death and the restart (under 100 ms for the first
    // restart): listen as soon as the port frees, and try again in the rare case Redis won.
    for (let round = 0; round < 5 && squatter === undefined; round += 1) {
      const restartsBefore = redis.restarts;
      process.kill(redis.pid, 'SIGKILL');
      const deadline = Date.now() + 2_000;
      while (squatter === undefined && redis.restarts === restartsBefore && Date.now() < deadline) {
        squatter = await recordingListener(redis.port).catch(() => undefined);
      }
      if (squatter !== undefined && redis.restarts !== restartsBefore) {
        await squatter.close();
        squatter = undefined;
      }
      if (squatter === undefined) await waitFor('the restart that won the race', () => redis.restarts > restartsBefore);
    }
    expect(squatter).toBeDefined();
    const restartsBefore = redis.restarts;
    await waitFor('ORCH-STATE-709', () => lines.some((l) => / ERROR ORCH-STATE-709 embedded redis-server cannot take its port again /.test(l)))
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${lines.join('\n')}`); });
    const refusal = lines.find((l) => /ORCH-STATE-709/.test(l)) ?? '';
    expect(refusal).toContain(`port=${redis.port}`);
    expect(refusal).toMatch(/delayMs=\d+/);
    await squatter?.close();
    expect(squatter?.received()).not.toContain(password);
    await waitFor('a restart once the port is free', () => redis.restarts === restartsBefore + 1, 3 * REDIS_RESTART_CAP_MS + 5_000);
    expect(await sendRedisCommands(redis.host, redis.port, [['AUTH', password], ['PING']])).toEqual(['+OK', '+PONG']);
  });
});

interface Recorder {
  port: number;
  /** Everything every client sent, as latin1 text. */
  received(): string;
  /** Stops listening and drops the clients still connected. */
  close(): Promise<void>;
}

/**
 * A squatter on 127.0.0.1:port that keeps what each client sends, hanging up after 200 ms (long
 * enough for a client's first write); rejects while the port is taken.
 */
function recordingListener(port: number): Promise<Recorder> {
  const chunks: Buffer[] = [];
  const clients = new Set<Socket>();
  const server: Server = createServer((socket) => {
    clients.add(socket);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.once('close', () => clients.delete(socket));
    setTimeout(() => socket.destroy(), 200).unref();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({
      port,
      received: () => Buffer.concat(chunks).toString('latin1'),
      close: () => new Promise((resolveClose) => {
        for (const client of clients) client.destroy();
        server.close(() => resolveClose());
      }),
    }));
  });
}

function findRedisServerOrError(options: Parameters<typeof findRedisServer>[1]): unknown {
  try {
    return findRedisServer(undefined, options);
  } catch (err) {
    return err;
  }
}
