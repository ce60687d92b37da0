import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConclaveError } from './errors/conclave-error.js';
import { findRedisServer, launchRedis, sendRedisCommands, type RedisServerHandle } from './redis-launcher.js';
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
