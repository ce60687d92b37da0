import { inspect } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, ConclaveError, findFreePort, type CapturedLogger } from '@conclave/common';
import { startRedis, waitUntil, type RedisServerHandle } from '@conclave/testing';
import { connectRedis, redisAvailable } from './redis-connection.js';

const PASSWORD = 'right-horse-5b1e';
const WRONG_PASSWORD = 'wrong-battery-9c3d';
/** Longest a refused start-up may take: one connect and one AUTH round trip on localhost. */
const FAIL_FAST_MS = 2_000;
/** How long a client that gave up is watched for a stray retry; the first backoff is < 250 ms. */
const QUIET_MS = 1_000;

interface LogRecordView {
  level: string;
  code?: string;
  message: string;
}

function records(captured: CapturedLogger): LogRecordView[] {
  return captured.jsonLines.map((line) => JSON.parse(line) as LogRecordView);
}

/** The error `promise` rejects with; a client it resolves with is closed and the test fails. */
async function rejectionOf(promise: Promise<Redis>): Promise<unknown> {
  try {
    const redis = await promise;
    redis.disconnect();
  } catch (err) {
    return err;
  }
  throw new Error('connectRedis resolved; expected a rejection');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function connectionsReceived(admin: Redis): Promise<number> {
  const stats = await admin.info('stats');
  return Number(/total_connections_received:(\d+)/.exec(stats)?.[1]);
}

function withPassword(server: RedisServerHandle, userinfo: string): string {
  return `redis://${userinfo}@${server.host}:${server.port}`;
}

describe('connectRedis', () => {
  let secured: RedisServerHandle;
  let open: RedisServerHandle;
  let admin: Redis;

  beforeAll(async () => {
    [secured, open] = await Promise.all([startRedis({ password: PASSWORD }), startRedis()]);
    admin = new Redis(secured.url);
    await admin.call('ACL', 'SETUSER', 'reader', 'on', `>${PASSWORD}`, '~*', '+@all');
  });
  afterAll(async () => {
    admin?.disconnect();
    await Promise.all([secured?.stop(), open?.stop()]);
  });

  /** Asserts the shape every refused start-up shares, and that the client stays gone. */
  async function expectRefused(url: string, answer: RegExp): Promise<ConclaveError> {
    const captured = captureLogger('ORCH');
    const before = await connectionsReceived(admin);
    const startedAt = Date.now();
    const err = await rejectionOf(connectRedis({ url, logger: captured.logger }));
    expect(Date.now() - startedAt).toBeLessThan(FAIL_FAST_MS);
    expect(err).toBeInstanceOf(ConclaveError);
    const refused = err as ConclaveError;
    expect(refused.code).toBe('ORCH-AUTH-558');
    expect(refused.message).toMatch(/^Redis refused the credentials: /);
    expect(refused.detail).toMatch(answer);
    expect(refused.detail).toContain(`${secured.host}:${secured.port}`);

    // One connection, then none: no retry loop and no reconnect timer left behind.
    await sleep(QUIET_MS);
    expect(await connectionsReceived(admin)).toBe(before + 1);
    expect(records(captured).filter((r) => r.code === 'ORCH-NET-601')).toEqual([]);

    for (const text of [refused.message, inspect(refused, { depth: 10 }), ...captured.lines, ...captured.jsonLines]) {
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain(WRONG_PASSWORD);
    }
    return refused;
  }

  it('rejects a wrong password at once with ORCH-AUTH-558, the URL masked', async () => {
    const refused = await expectRefused(withPassword(secured, `:${WRONG_PASSWORD}`), /answered "WRONGPASS /);
    expect(refused.detail).toContain(`redis://:***@${secured.host}:${secured.port}`);
  });

  it('rejects a missing password against requirepass with ORCH-AUTH-558 (NOAUTH)', async () => {
    const refused = await expectRefused(`redis://${secured.host}:${secured.port}`, /NOAUTH .*the URL has no password/);
    expect(refused.detail).toContain(`redis://${secured.host}:${secured.port}`);
  });

  it('rejects an unknown ACL user with ORCH-AUTH-558', async () => {
    const refused = await expectRefused(withPassword(secured, `nobody:${PASSWORD}`), /WRONGPASS .*wrong password or ACL user/);
    expect(refused.detail).toContain(`redis://nobody:***@${secured.host}:${secured.port}`);
  });

  it('connects with the right password, and with the right ACL user', async () => {
    for (const url of [secured.url, withPassword(secured, `reader:${PASSWORD}`)]) {
      const captured = captureLogger('ORCH');
      const redis = await connectRedis({ url, logger: captured.logger });
      try {
        expect(await redis.ping()).toBe('PONG');
        expect(captured.lines.some((l) => l.includes('connected to redis'))).toBe(true);
        expect(records(captured).filter((r) => r.level === 'warn' || r.level === 'error')).toEqual([]);
        expect(captured.lines.join('\n')).not.toContain(PASSWORD);
      } finally {
        await redis.quit();
      }
    }
  });

  it('connects without a warning when neither the URL nor Redis has a password', async () => {
    const captured = captureLogger('ORCH');
    const redis = await connectRedis({ url: open.url, logger: captured.logger });
    try {
      expect(await redis.ping()).toBe('PONG');
      expect(records(captured).filter((r) => r.level === 'warn' || r.level === 'error')).toEqual([]);
    } finally {
      await redis.quit();
    }
  });

  it('connects with a warning when the URL has a password and Redis needs none', async () => {
    const captured = captureLogger('ORCH');
    const redis = await connectRedis({ url: withPassword(open, `:${WRONG_PASSWORD}`), logger: captured.logger });
    try {
      expect(await redis.ping()).toBe('PONG');
      const warnings = records(captured).filter((r) => r.level === 'warn');
      expect(warnings.map((r) => r.message)).toEqual(['redis requires no password; the one in the URL is ignored']);
      expect(captured.lines.join('\n')).not.toContain(WRONG_PASSWORD);
    } finally {
      await redis.quit();
    }
  });

  it('keeps retrying an unreachable Redis under ORCH-NET-601 until aborted', async () => {
    const port = await findFreePort();
    const captured = captureLogger('ORCH');
    const abort = new AbortController();
    const connecting = rejectionOf(connectRedis({ url: `redis://:${PASSWORD}@127.0.0.1:${port}`, logger: captured.logger, signal: abort.signal }));
    await waitUntil(() => records(captured).filter((r) => r.code === 'ORCH-NET-601').length >= 2, { what: 'two retries' });
    const retries = records(captured).filter((r) => r.code === 'ORCH-NET-601');
    expect(retries.every((r) => r.level === 'warn')).toBe(true);
    expect(captured.lines.find((l) => l.includes('ORCH-NET-601'))).toMatch(/ECONNREFUSED/);

    abort.abort();
    const err = await connecting;
    expect(err).toBeInstanceOf(ConclaveError);
    expect((err as ConclaveError).code).toBe('ORCH-NET-601');
    const linesAtAbort = captured.lines.length;
    await sleep(QUIET_MS);
    expect(captured.lines.length).toBe(linesAtAbort);
    expect([...captured.lines, (err as Error).message].join('\n')).not.toContain(PASSWORD);
  });
});

describe('connectRedis after Redis changes its password', () => {
  let server: RedisServerHandle;

  beforeAll(async () => {
    server = await startRedis({ password: PASSWORD });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('logs ORCH-AUTH-558 at error level on each refused retry and reconnects once the password is back', async () => {
    const captured = captureLogger('ORCH');
    const redis = await connectRedis({ url: server.url, logger: captured.logger });
    const admin = new Redis(server.url);
    try {
      const clientId = String(await redis.client('ID'));
      await admin.config('SET', 'requirepass', WRONG_PASSWORD);
      await admin.client('KILL', 'ID', clientId);

      const refusals = () => records(captured).filter((r) => r.code === 'ORCH-AUTH-558');
      await waitUntil(() => refusals().length >= 2, { what: 'two refused retries' });
      expect(refusals().every((r) => r.level === 'error')).toBe(true);
      expect(redis.status).not.toBe('end');

      await admin.config('SET', 'requirepass', PASSWORD);
      await waitUntil(() => captured.lines.some((l) => l.includes('reconnected to redis')), { what: 'the reconnect' });
      expect(await redis.ping()).toBe('PONG');
      const text = captured.lines.join('\n');
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain(WRONG_PASSWORD);
    } finally {
      redis.disconnect();
      admin.disconnect();
    }
  });
});

describe('redisAvailable', () => {
  it('is true while the connection is ready and false at once when Redis goes away, without waiting for it', async () => {
    const server = await startRedis();
    const redis = await connectRedis({ url: server.url, logger: captureLogger('ORCH').logger });
    try {
      expect(redisAvailable(redis)).toBe(true);
      await server.stop();
      await waitUntil(() => !redisAvailable(redis), { what: 'the lost connection seen', timeoutMs: 2_000 });
      expect(['reconnecting', 'connecting', 'close']).toContain(redis.status);
      redis.disconnect();
      expect(redisAvailable(redis)).toBe(false);
    } finally {
      redis.disconnect();
      await server.stop();
    }
  });
});
