import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis } from '@conclave/testing';
import type { RedisServerHandle } from '@conclave/testing';
import { JobStore } from './job-store.js';
import type { JobRecord, JobStateName } from './job-store.js';
import { redisKeys } from './redis-keys.js';

const TTL_SECONDS = 600;

describe('JobStore: an ended job never changes', () => {
  let server: RedisServerHandle;
  let redis: Redis;
  let store: JobStore;
  const updates: JobRecord[] = [];

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    store = new JobStore(redis, TTL_SECONDS);
    store.on('update', (record) => updates.push(record));
  });
  afterAll(async () => {
    await redis?.quit();
    await server?.stop();
  });

  // Job ids are random UUIDs: each test writes its own keys.
  async function created(): Promise<string> {
    const id = randomUUID();
    await store.create({ id, state: 'queued', kind: 'infer', model: 'm', node: '', attempts: 0, createdAtMs: 1, finishedAtMs: 0, runMs: 0 });
    return id;
  }

  it('applies changes to a queued or running job, and starts the TTL only when it ends', async () => {
    const id = await created();
    expect(await store.update(id, { state: 'running', node: 'n1', attempts: 1 })).toMatchObject({ state: 'running', node: 'n1' });
    expect(await redis.ttl(redisKeys.job(id))).toBe(-1);
    expect(await store.update(id, { state: 'queued', error: { code: 'NODE-JOB-802', message: 'retry', status: 'INTERNAL', retryable: true } }))
      .toMatchObject({ state: 'queued' });
    expect(await store.update(id, { state: 'completed', runMs: 5 })).toMatchObject({ state: 'completed', runMs: 5 });
    const ttl = await redis.ttl(redisKeys.job(id));
    expect(ttl).toBeGreaterThan(TTL_SECONDS - 10);
    expect(ttl).toBeLessThanOrEqual(TTL_SECONDS);
  });

  const TERMINAL: JobStateName[] = ['completed', 'failed', 'cancelled'];
  const EVERY: JobStateName[] = ['queued', 'running', 'completed', 'failed', 'cancelled'];

  it.each(TERMINAL)('refuses any change to a %s job, returns it as it is, and tells no watcher', async (ended) => {
    const id = await created();
    await store.update(id, { state: ended, node: 'n1', finishedAtMs: 100 });
    const before = await redis.hgetall(redisKeys.job(id));
    const seen = updates.length;
    for (const next of EVERY) {
      const reply = await store.update(id, { state: next, node: 'n2', finishedAtMs: 200, runMs: 7 });
      expect(reply).toMatchObject({ state: ended, node: 'n1', finishedAtMs: 100, runMs: 0 });
    }
    expect(await redis.hgetall(redisKeys.job(id))).toEqual(before);
    expect(updates.length).toBe(seen);
  });

  it('lets exactly one of two concurrent endings through (a cancel racing the result)', async () => {
    const ids = await Promise.all(Array.from({ length: 20 }, () => created()));
    await Promise.all(ids.flatMap((id) => [
      store.update(id, { state: 'completed', runMs: 5 }),
      store.update(id, { state: 'cancelled' }),
    ]));
    for (const id of ids) {
      const ends = updates.filter((u) => u.id === id && TERMINAL.includes(u.state));
      expect(ends).toHaveLength(1);
      expect((await store.get(id))?.state).toBe(ends[0]?.state);
    }
  });

  it('does not bring back a record that is gone (expired): the update returns undefined and writes nothing', async () => {
    const id = randomUUID();
    expect(await store.update(id, { state: 'completed' })).toBeUndefined();
    expect(await redis.exists(redisKeys.job(id))).toBe(0);
  });
});
