import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { captureLogger } from '@conclave/common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startRedis, waitUntil } from '@conclave/testing';
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

describe('JobStore: the job index', () => {
  let server: RedisServerHandle;
  let redis: Redis;
  const TTL = 600;

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
  });
  beforeEach(async () => {
    await redis.flushdb();
  });
  afterAll(async () => {
    await redis?.quit();
    await server?.stop();
  });

  const record = (id: string, createdAtMs: number, extra: Partial<JobRecord> = {}): JobRecord => ({
    id, state: 'queued', kind: 'infer', model: 'm', node: '', attempts: 0, createdAtMs, finishedAtMs: 0, runMs: 0, ...extra,
  });
  const ids = (page: { jobs: JobRecord[] }) => page.jobs.map((j) => j.id);

  /** Every page of a query, following the tokens, and the size of each. */
  async function allPages(store: JobStore, query: Parameters<JobStore['list']>[0]): Promise<{ ids: string[]; sizes: number[] }> {
    const out = { ids: [] as string[], sizes: [] as number[] };
    let pageToken = '';
    do {
      const page = await store.list({ ...query, ...(pageToken ? { pageToken } : {}) });
      out.ids.push(...ids(page));
      out.sizes.push(page.jobs.length);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return out;
  }

  it('lists newest first, in pages that go on where the last stopped, also among jobs created in one millisecond', async () => {
    const store = new JobStore(redis, TTL);
    // j05…j09 share a millisecond: a page boundary falls among them.
    const created = [1000, 2000, 3000, 4000, 5000, 6000, 6000, 6000, 6000, 6000, 7000, 8000];
    for (const [i, ms] of created.entries()) await store.create(record(`j${String(i).padStart(2, '0')}`, ms));
    const first = await store.list({ limit: 4 });
    expect(ids(first)).toEqual(['j11', 'j10', 'j09', 'j08']);
    expect(first.nextPageToken).not.toBe('');
    const everything = await allPages(store, { limit: 4 });
    expect(everything.ids).toEqual(['j11', 'j10', 'j09', 'j08', 'j07', 'j06', 'j05', 'j04', 'j03', 'j02', 'j01', 'j00']);
    expect(everything.sizes).toEqual([4, 4, 4]);
    // The records come without their outputs.
    await store.update('j11', { state: 'completed', outputs: { y: { dtype: 'float32', dims: [1], raw: 'AAAAAA==' } } });
    expect((await store.list({ limit: 1 })).jobs[0]).toMatchObject({ id: 'j11', state: 'completed' });
    expect((await store.list({ limit: 1 })).jobs[0]?.outputs).toBeUndefined();
    expect((await store.get('j11'))?.outputs).toBeDefined();
  });

  it('filters by state, model and node; queued and running jobs come from their own index', async () => {
    const store = new JobStore(redis, TTL);
    await store.create(record('a', 1, { model: 'resnet' }));
    await store.create(record('b', 2, { model: 'affine' }));
    await store.create(record('c', 3, { model: 'resnet' }));
    await store.create(record('d', 4, { model: 'resnet' }));
    await store.update('b', { state: 'running', node: 'n1', attempts: 1 });
    await store.update('c', { state: 'running', node: 'n2', attempts: 1 });
    await store.update('c', { state: 'completed', finishedAtMs: 10 });
    await store.update('d', { state: 'failed', node: 'n1', finishedAtMs: 11 });
    expect(ids(await store.list({ state: 'queued' }))).toEqual(['a']);
    expect(ids(await store.list({ state: 'running' }))).toEqual(['b']);
    expect(ids(await store.list({ state: 'completed' }))).toEqual(['c']);
    expect(ids(await store.list({ model: 'resnet' }))).toEqual(['d', 'c', 'a']);
    expect(ids(await store.list({ nodes: new Set(['n1']) }))).toEqual(['d', 'b']);
    expect(ids(await store.list({ nodes: new Set(['n1', 'n2']), model: 'resnet' }))).toEqual(['d', 'c']);
    expect(await redis.zrange(redisKeys.activeJobs(), 0, -1)).toEqual(['a', 'b']);
    expect((await store.list({ state: 'cancelled' })).jobs).toEqual([]);
  });

  it('drops an entry whose record is gone when a list meets it, and its count with it', async () => {
    const store = new JobStore(redis, TTL);
    await store.create(record('kept', 1));
    await store.create(record('gone', 2));
    await redis.del(redisKeys.job('gone'));
    expect(ids(await store.list())).toEqual(['kept']);
    expect(await redis.zscore(redisKeys.jobIndex(), 'gone')).toBeNull();
    expect(await store.counts()).toEqual([{ state: 'queued', model: 'm', count: 1 }]);
  });

  it('counts jobs by state and model, and forgets ended ones when their record expires', async () => {
    const store = new JobStore(redis, 1);
    await store.create(record('q1', 1, { model: 'a' }));
    await store.create(record('q2', 2, { model: 'a' }));
    await store.create(record('g', 3, { model: '', kind: 'generate' }));
    await store.update('q2', { state: 'running', node: 'n1' });
    await store.update('g', { state: 'completed', finishedAtMs: Date.now() });
    const sorted = async () => (await store.counts()).sort((x, y) => `${x.state}${x.model}`.localeCompare(`${y.state}${y.model}`));
    expect(await sorted()).toEqual([
      { state: 'completed', model: '', count: 1 },
      { state: 'queued', model: 'a', count: 1 },
      { state: 'running', model: 'a', count: 1 },
    ]);
    // The completed record expires after its 1 s TTL; the index follows at the next read.
    await waitUntil(async () => (await redis.exists(redisKeys.job('g'))) === 0, { what: 'the record expired', timeoutMs: 5_000 });
    await waitUntil(async () => (await sorted()).length === 2, { what: 'the count of the expired job gone', timeoutMs: 5_000 });
    expect(await redis.zscore(redisKeys.jobIndex(), 'g')).toBeNull();
    expect(await redis.hget(redisKeys.jobCounts(), 'completed|')).toBeNull();
  });

  it('keeps at most maxEndedIndexed ended jobs, those expiring last, and every queued one', async () => {
    const store = new JobStore(redis, TTL, { maxEndedIndexed: 2 });
    for (let i = 0; i < 5; i++) await store.create(record(`e${i}`, i));
    await store.create(record('waiting', 100));
    for (let i = 0; i < 5; i++) {
      await store.update(`e${i}`, { state: 'completed', finishedAtMs: 1000 + i });
      // Distinct expiry times: the index keeps the two that expire last.
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
    expect((await allPages(store, {})).ids).toEqual(['waiting', 'e4', 'e3']);
    expect(await store.counts()).toEqual(expect.arrayContaining([{ state: 'completed', model: 'm', count: 2 }, { state: 'queued', model: 'm', count: 1 }]));
    expect((await store.get('e0'))?.state).toBe('completed');
  });

  it('reconciles an index left behind by a lost write with the records of its queued and running jobs', async () => {
    const store = new JobStore(redis, TTL);
    await store.create(record('lost', 1));
    await store.create(record('fine', 2));
    // As if the orchestrator died between the record's change and the index's.
    await redis.hset(redisKeys.job('lost'), 'state', 'completed');
    expect(await redis.hgetall(redisKeys.jobCounts())).toEqual({ 'queued|m': '2' });
    expect(await store.reconcileIndex()).toBe(1);
    expect((await store.counts()).sort((x, y) => x.state.localeCompare(y.state))).toEqual([
      { state: 'completed', model: 'm', count: 1 }, { state: 'queued', model: 'm', count: 1 },
    ]);
    expect(await redis.zrange(redisKeys.activeJobs(), 0, -1)).toEqual(['fine']);
    expect(await store.reconcileIndex()).toBe(0);
  });

  it('repairs the counts at the first scrape (counts) of a new store, as after a restart', async () => {
    await new JobStore(redis, TTL).create(record('lost', 1));
    await redis.hset(redisKeys.job('lost'), 'state', 'running');
    expect(await new JobStore(redis, TTL).counts()).toEqual([{ state: 'running', model: 'm', count: 1 }]);
  });

  it('finds the queued and running jobs of one model from their records', async () => {
    const store = new JobStore(redis, TTL);
    await store.create(record('q', 1, { model: 'resnet' }));
    await store.create(record('r', 2, { model: 'resnet' }));
    await store.create(record('other', 3, { model: 'affine' }));
    await store.create(record('done', 4, { model: 'resnet' }));
    await store.update('r', { state: 'running', node: 'n1' });
    await store.update('done', { state: 'cancelled', finishedAtMs: 5 });
    expect((await store.activeJobsOf('resnet')).sort()).toEqual(['q', 'r']);
    expect(await store.activeJobsOf('nope')).toEqual([]);
  });

  it('logs a lost index write under ORCH-STATE-712, and the record keeps the change', async () => {
    const { logger, lines } = captureLogger('ORCH');
    const store = new JobStore(redis, TTL, { logger });
    await store.create(record('j', 1));
    // A key of the wrong type makes the index script fail, as a Redis that refuses writes would.
    await redis.set(redisKeys.jobCounts(), 'not a hash');
    expect(await store.update('j', { state: 'running', node: 'n1' })).toMatchObject({ state: 'running' });
    const line = await waitUntil(() => lines.find((l) => l.includes('ORCH-STATE-712')), { timeoutMs: 5_000 });
    expect(line).toMatch(/WARN +ORCH-STATE-712 job index not updated jobId=j state=running cause="WRONGTYPE /);
    expect(await redis.hget(redisKeys.job('j'), 'state')).toBe('running');
  });

  it('refuses a page token it did not make with ORCH-REQ-203', async () => {
    const store = new JobStore(redis, TTL);
    await expect(store.list({ pageToken: 'not-a-token' })).rejects.toMatchObject({ code: 'ORCH-REQ-203' });
  });
});
