// Needs the built packages (`pnpm build`): the orchestrator and nodes run from dist, in process.
// The Control API's job features through real gRPC on an in-process orchestrator.
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_PLAINTEXT_BYTES, tensorFromTypedArray } from '@conclave/protocol';
import type { Job__Output, WireTensor } from '@conclave/protocol';
import { affineModel, createTestControl, heavyModel, startRedis, startTestNode, startTestOrchestrator, waitUntil } from '@conclave/testing';
import type { RedisServerHandle, TestControl } from '@conclave/testing';
import { BULL_PREFIX, JOB_QUEUE_NAME, KEY_PREFIX } from './redis-keys.js';

const affine = affineModel({ seed: 11 });
const affineInput = (): Record<string, WireTensor> => {
  const x = affine.sampleInputs(1).x!;
  return { x: tensorFromTypedArray('float32', x.dims, x.data) };
};
/** Tens of ms a run here: one-slot runs that end in a strict order. */
const heavy = heavyModel({ size: 512, layers: 64, batch: 128 });
/** Hundreds of ms a run here: still running when the test cancels it. */
const slow = heavyModel({ size: 512, layers: 128, batch: 256, seed: 2 });
const inputOf = (model: typeof heavy) => (): Record<string, WireTensor> => {
  const x = model.sampleInputs().x!;
  return { x: tensorFromTypedArray('float32', x.dims, x.data) };
};
const heavyInput = inputOf(heavy);
const slowInput = inputOf(slow);

/** One Redis for the file; each orchestrator below keeps its state in a database of its own. */
let server: RedisServerHandle;
let nextDb = 0;
beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server?.stop();
});

/** An in-process orchestrator on its own Redis database, with a look at its queue and keys. */
async function orchestratorWith(options: { maxQueuedJobs?: number } = {}) {
  const db = ++nextDb;
  const orchestrator = await startTestOrchestrator({ redisUrl: `${server.url}/${db}`, ...options });
  const control = createTestControl(orchestrator);
  const redis = new Redis({ host: server.host, port: server.port, db, maxRetriesPerRequest: null });
  const queue = new Queue(JOB_QUEUE_NAME, { connection: redis, prefix: BULL_PREFIX });
  return {
    orchestrator,
    control,
    /** BullMQ entries not finished: waiting, prioritized, delayed or active. */
    queued: async () => {
      const counts = await queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
      return Object.values(counts).reduce((a, b) => a + b, 0);
    },
    active: () => queue.getActiveCount(),
    activeIds: async () => (await queue.getActive()).map((j) => j.id ?? ''),
    records: async () => (await redis.keys(`${KEY_PREFIX}job:*`)).length,
    async close() {
      control.close();
      await orchestrator.close();
      await queue.close();
      await redis.flushdb();
      await redis.quit();
    },
  };
}

const refusedWith = (code: number, catalog: string) => ({ code, details: expect.stringContaining(catalog) as unknown });

describe('SubmitJob and CancelJob with no node to run the jobs', () => {
  let o: Awaited<ReturnType<typeof orchestratorWith>>;
  let control: TestControl;

  beforeAll(async () => {
    o = await orchestratorWith();
    control = o.control;
    await control.addModel('affine', affine.bytes);
  });
  afterAll(() => o?.close());

  it('returns the first job for a repeated client_job_id and queues nothing more, also under concurrent submits', async () => {
    const before = await o.queued();
    const first = await control.infer('affine', affineInput(), { clientJobId: 'order-17' });
    const again = await control.infer('affine', affineInput(), { clientJobId: 'order-17' });
    expect(again.id).toBe(first.id);
    const racing = await Promise.all(Array.from({ length: 5 }, () => control.infer('affine', affineInput(), { clientJobId: 'order-18' })));
    expect(new Set(racing.map((j) => j.id)).size).toBe(1);
    expect(racing[0]?.id).not.toBe(first.id);
    expect(await o.queued()).toBe(before + 2);
  });

  it('cancels a queued job at once: CANCELLED with ORCH-JOB-803, out of the queue; an unknown id is NOT_FOUND', async () => {
    // The dispatcher takes one job and waits with it for a node; the next ones stay in the queue.
    await control.infer('affine', affineInput());
    await waitUntil(async () => (await o.active()) === 1, { what: 'one job waiting in the dispatcher' });
    const queuedBefore = await o.queued();
    const job = await control.infer('affine', affineInput());
    expect(await o.queued()).toBe(queuedBefore + 1);
    const cancelled = await control.cancel(job.id);
    expect(cancelled).toMatchObject({ id: job.id, state: 'JOB_STATE_CANCELLED', error: { code: 'ORCH-JOB-803' } });
    expect(await o.queued()).toBe(queuedBefore);
    expect((await control.cancel(job.id)).state).toBe('JOB_STATE_CANCELLED');
    await expect(control.cancel('no-such-job')).rejects.toMatchObject(refusedWith(5, 'ORCH-JOB-801'));
  });

  it('cancels the job the dispatcher holds while it waits for a node', async () => {
    await control.infer('affine', affineInput());
    const [held] = await waitUntil(async () => {
      const ids = await o.activeIds();
      return ids.length === 1 ? ids : undefined;
    }, { what: 'the job held by the dispatcher' });
    expect((await control.get(held ?? '')).state).toBe('JOB_STATE_QUEUED');
    await control.cancel(held ?? '');
    expect(await control.wait(held ?? '', 10_000)).toMatchObject({ state: 'JOB_STATE_CANCELLED', error: { code: 'ORCH-JOB-803' } });
    await waitUntil(async () => !(await o.activeIds()).includes(held ?? ''), { what: 'the job out of BullMQ' });
  });

  it('WatchJob on an unknown id is NOT_FOUND ORCH-JOB-801', async () => {
    await expect(control.watch('no-such-job', { timeoutMs: 5_000 })).rejects.toMatchObject(refusedWith(5, 'ORCH-JOB-801'));
  });

  it('refuses at submit, with ORCH-REQ-206 and no retry, a job too large to reach a node in one sealed frame', async () => {
    const before = await o.records();
    // Small enough for the gRPC limit, too large once it is an AssignJob with its id and fields.
    const prompt = 'a'.repeat(DEFAULT_MAX_PLAINTEXT_BYTES - 8);
    await expect(control.submit({ generate: { prompt, maxTokens: 1 } })).rejects.toMatchObject(refusedWith(3, 'ORCH-REQ-206'));
    expect(await o.records()).toBe(before);
  });

  it('refuses out-of-range values with ORCH-REQ-207 naming the field: temperature NaN/∞/negative, max_tokens, timeout_ms, a join token TTL', async () => {
    const generate = (extra: Record<string, number>) => control.submit({ generate: { prompt: 'hi', ...extra } });
    for (const temperature of [Number.NaN, Number.POSITIVE_INFINITY, -1]) {
      await expect(generate({ temperature })).rejects.toMatchObject(refusedWith(3, 'generate.temperature'));
    }
    await expect(generate({ maxTokens: 2 ** 32 - 1 })).rejects.toMatchObject(refusedWith(3, 'ORCH-REQ-207'));
    await expect(control.infer('affine', affineInput(), { timeoutMs: 2 ** 32 - 1 })).rejects.toMatchObject(refusedWith(3, 'timeout_ms'));
    await expect(control.createJoinString((2 ** 32 - 1) * 1000)).rejects.toMatchObject(refusedWith(3, 'ttl_seconds'));
  });
});

describe('Control calls while Redis is down', () => {
  it('fail at once with UNAVAILABLE ORCH-STATE-710 instead of hanging until the client gives up', async () => {
    const own = await startRedis();
    const orchestrator = await startTestOrchestrator({ redisUrl: own.url });
    const control = createTestControl(orchestrator);
    try {
      await control.listNodes();
      await own.stop();
      const t0 = Date.now();
      await expect(control.listNodes()).rejects.toMatchObject(refusedWith(14, 'ORCH-STATE-710'));
      await expect(control.get('any')).rejects.toMatchObject(refusedWith(14, 'ORCH-STATE-710'));
      await expect(control.createJoinString()).rejects.toMatchObject(refusedWith(14, 'ORCH-STATE-710'));
      expect(Date.now() - t0).toBeLessThan(2_000);
    } finally {
      control.close();
      await orchestrator.close();
    }
  });
});

describe('SubmitJob beyond maxQueuedJobs', () => {
  let o: Awaited<ReturnType<typeof orchestratorWith>>;
  let control: TestControl;

  beforeAll(async () => {
    o = await orchestratorWith({ maxQueuedJobs: 2 });
    control = o.control;
    await control.addModel('affine', affine.bytes);
  });
  afterAll(() => o?.close());

  it('refuses with RESOURCE_EXHAUSTED ORCH-REQ-204 and queues nothing; a repeated client_job_id still gets its job', async () => {
    const accepted: Job__Output[] = [];
    for (let i = 0; i < 3; i++) accepted.push(await control.infer('affine', affineInput(), { clientJobId: `fill-${i}` }));
    // The depth is read at most every 250 ms, so submits go on until one sees the full queue.
    const refusal = await waitUntil(() => control.infer('affine', affineInput()).then(
      (job) => {
        accepted.push(job);
        return undefined;
      },
      (err: unknown) => err,
    ), { what: 'a refused submit', timeoutMs: 5_000, intervalMs: 20 });
    expect(refusal).toMatchObject({ code: 8, details: expect.stringMatching(/^ORCH-REQ-204 .*\(limit 2\)/) as unknown });
    expect(await o.queued()).toBe(accepted.length);
    expect(await o.records()).toBe(accepted.length);
    const again = await control.infer('affine', affineInput(), { clientJobId: 'fill-0' });
    expect(again.id).toBe(accepted[0]?.id);
  });
});

describe('jobs on one node with one slot', () => {
  let o: Awaited<ReturnType<typeof orchestratorWith>>;
  let control: TestControl;
  let node: Awaited<ReturnType<typeof startTestNode>>;
  const running = async () => (await control.listNodes()).find((n) => n.id === node.nodeId)?.running;

  beforeAll(async () => {
    o = await orchestratorWith();
    control = o.control;
    node = await startTestNode({ orchestrator: o.orchestrator, name: 'one-slot', slots: 1 });
    await waitUntil(async () => (await control.listNodes()).some((n) => n.id === node.nodeId && n.state === 'connected'), { what: 'the node' });
    await control.addModel('affine', affine.bytes);
    await control.addModel('heavy', heavy.bytes);
    await control.addModel('slow', slow.bytes);
    // Loaded once, so that later runs take their run time only.
    expect((await control.run('heavy', heavyInput())).state).toBe('JOB_STATE_COMPLETED');
  });
  afterAll(async () => {
    await node?.close();
    await o?.close();
  });

  it('runs the job with the highest priority first', async () => {
    await control.drainNode(node.nodeId);
    // Held by the dispatcher until the node takes work again; the rest wait in the queue.
    const held = await control.infer('heavy', heavyInput());
    await waitUntil(async () => (await o.active()) === 1, { what: 'the first job held by the dispatcher' });
    // Priority 0 (the default) is the lowest: it must not jump ahead of the prioritized jobs.
    const none = await control.infer('heavy', heavyInput());
    const low = await control.infer('heavy', heavyInput(), { priority: 1 });
    const high = await control.infer('heavy', heavyInput(), { priority: 10 });
    const mid = await control.infer('heavy', heavyInput(), { priority: 5 });
    await control.undrainNode(node.nodeId);
    const done = await Promise.all([held, none, low, high, mid].map((j) => control.wait(j.id)));
    expect(done.map((j) => j.state)).toEqual(done.map(() => 'JOB_STATE_COMPLETED'));
    // One slot: each job starts after the one before it ended, so the ends give the order.
    const order = [...done].sort((a, b) => Number(a.finishedAtMs) - Number(b.finishedAtMs)).map((j) => j.id);
    expect(order).toEqual([held.id, high.id, mid.id, low.id, none.id]);
  });

  it('cancels a running job: CANCELLED with ORCH-JOB-803, and the node\'s slot is free at once', async () => {
    const job = await control.infer('slow', slowInput());
    await waitUntil(async () => (await control.get(job.id)).state === 'JOB_STATE_RUNNING', { what: 'the job running', intervalMs: 5 });
    await control.cancel(job.id);
    const ended = await control.wait(job.id, 10_000);
    expect(ended).toMatchObject({ state: 'JOB_STATE_CANCELLED', error: { code: 'ORCH-JOB-803' }, node: node.nodeId });
    // The orchestrator stopped waiting for it: the node's run may go on, the slot is the scheduler's again.
    expect(await running()).toBe(0);
  });

  it('fails a job at its timeout_ms with ORCH-JOB-802 (here while it waits for a node)', async () => {
    await control.drainNode(node.nodeId);
    try {
      const job = await control.infer('affine', affineInput(), { timeoutMs: 300 });
      const ended = await control.wait(job.id, 10_000);
      expect(ended).toMatchObject({ state: 'JOB_STATE_FAILED', attempts: 0, error: { code: 'ORCH-JOB-802', message: expect.stringContaining('after 300 ms') as unknown } });
    } finally {
      await control.undrainNode(node.nodeId);
    }
  });

  it('sends a job only to a node with the accelerator it requires', async () => {
    const job = await control.infer('affine', affineInput(), { timeoutMs: 300, requirements: { accelerator: 'hailo' } });
    const ended = await control.wait(job.id, 10_000);
    expect(ended).toMatchObject({ state: 'JOB_STATE_FAILED', node: '', error: { code: 'ORCH-JOB-802' } });
    expect((await control.run('affine', affineInput(), { requirements: { accelerator: 'cpu' } })).state).toBe('JOB_STATE_COMPLETED');
  });

  it('WatchJob streams each state, queued, running, completed, and ends after the last', async () => {
    await control.drainNode(node.nodeId);
    const job = await control.infer('affine', affineInput());
    let first: (() => void) | undefined;
    const firstSeen = new Promise<void>((resolve) => (first = resolve));
    const watched = control.watch(job.id, { onJob: () => first?.() });
    await firstSeen;
    await control.undrainNode(node.nodeId);
    const states = (await watched).map((j) => j.state);
    expect(states).toEqual(['JOB_STATE_QUEUED', 'JOB_STATE_RUNNING', 'JOB_STATE_COMPLETED']);
  });
});
