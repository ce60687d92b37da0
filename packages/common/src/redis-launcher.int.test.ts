import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConclaveError } from './errors/conclave-error.js';
import { findRedisServer, launchRedis, redisGuardianPids, sendRedisCommands, type RedisServerHandle } from './redis-launcher.js';
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
    expect(lines.filter((l) => / WARN {2}ORCH-STATE stopping a redis-server left running on this data dir by an earlier run /.test(l))).toEqual([
      expect.stringContaining(`pid=${old.pid}`),
    ]);
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

function findRedisServerOrError(options: Parameters<typeof findRedisServer>[1]): unknown {
  try {
    return findRedisServer(undefined, options);
  } catch (err) {
    return err;
  }
}
