// Needs the built packages (`pnpm build`): the orchestrator and nodes run from dist, in process.
// The Control API's job features through real gRPC on an in-process orchestrator.
import { access, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger } from '@conclave/common';
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
async function orchestratorWith(options: Partial<Parameters<typeof startTestOrchestrator>[0]> = {}) {
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
    // Its timeout says why no node took it.
    expect(ended.error?.message).toContain('after 300 ms without a node; among those connected, no node offers accelerator "hailo"');
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

/** The gRPC error a call must end with (a call that succeeds fails the test). */
async function refusalOf(call: Promise<unknown>): Promise<{ code: number; details: string }> {
  const err = await call.then(() => new Error('the call succeeded'), (e: unknown) => e);
  if (err instanceof Error && err.message === 'the call succeeded') throw err;
  return err as { code: number; details: string };
}

/** Waits a little, so that jobs submitted one after another are created in distinct milliseconds. */
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe('ListJobs, GetNode and RemoveModel', () => {
  let o: Awaited<ReturnType<typeof orchestratorWith>>;
  let control: TestControl;
  let node: Awaited<ReturnType<typeof startTestNode>>;
  /** Queued jobs a test left behind: cancelled after it, so that the next starts with an idle queue. */
  const leftQueued: string[] = [];
  const ids = (jobs: Job__Output[]) => jobs.map((j) => j.id);

  beforeAll(async () => {
    o = await orchestratorWith();
    control = o.control;
    node = await startTestNode({ orchestrator: o.orchestrator, name: 'pi-list', slots: 1 });
    await waitUntil(async () => (await control.listNodes()).some((n) => n.id === node.nodeId && n.state === 'connected'), { what: 'the node' });
    await control.addModel('affine', affine.bytes);
  });
  afterAll(async () => {
    await node?.close();
    await o?.close();
  });

  async function drained<T>(fn: () => Promise<T>): Promise<T> {
    await control.drainNode(node.nodeId);
    try {
      return await fn();
    } finally {
      for (const id of leftQueued.splice(0)) await control.cancel(id);
      await control.undrainNode(node.nodeId);
    }
  }

  it('lists jobs newest first, by state, model and node (id or name), page by page', async () => {
    const completed: string[] = [];
    for (let i = 0; i < 3; i++) {
      completed.unshift((await control.run('affine', affineInput())).id);
      await tick();
    }
    await drained(async () => {
      const queued: string[] = [];
      for (let i = 0; i < 2; i++) {
        queued.unshift((await control.infer('affine', affineInput())).id);
        await tick();
      }
      leftQueued.push(...queued);
      expect(ids((await control.listJobs()).jobs)).toEqual([...queued, ...completed]);
      expect(ids((await control.listJobs({ state: 'queued' })).jobs)).toEqual(queued);
      expect(ids((await control.listJobs({ state: 'completed', node: 'pi-list' })).jobs)).toEqual(completed);
      expect(ids((await control.listJobs({ node: node.nodeId, model: 'affine' })).jobs)).toEqual(completed);
      expect((await control.listJobs({ model: 'nope' })).jobs).toEqual([]);
      const pages: string[][] = [];
      let pageToken = '';
      do {
        const page = await control.listJobs({ limit: 2, ...(pageToken ? { pageToken } : {}) });
        pages.push(ids(page.jobs));
        pageToken = page.nextPageToken;
      } while (pageToken);
      expect(pages).toEqual([queued, completed.slice(0, 2), completed.slice(2)]);
      // Listed jobs carry what they asked for; the list leaves their outputs out.
      const [done] = (await control.listJobs({ state: 'completed', limit: 1 })).jobs;
      expect(done).toMatchObject({ id: completed[0], requirements: { accelerator: '', capability: '' }, waiting: '', outputs: {} });
      expect(Object.keys((await control.get(completed[0] ?? '')).outputs)).toEqual(['y']);
    });
  });

  it('refuses a bad state, a limit over 500, a token it did not give, and an unknown node, each with its code', async () => {
    await expect(control.listJobs({ state: 'done' })).rejects.toMatchObject(refusedWith(3, 'ORCH-REQ-203'));
    await expect(control.listJobs({ limit: 501 })).rejects.toMatchObject(refusedWith(3, 'ORCH-REQ-207'));
    await expect(control.listJobs({ pageToken: 'bm9wZQ' })).rejects.toMatchObject(refusedWith(3, 'ORCH-REQ-203'));
    await expect(control.listJobs({ node: 'no-such-node' })).rejects.toMatchObject(refusedWith(5, 'ORCH-SCHED-854'));
  });

  it('GetNode takes an id or a name and answers every NodeInfo field; NOT_FOUND for neither, FAILED_PRECONDITION for a shared name', async () => {
    const byId = await control.getNode(node.nodeId);
    const listed = (await control.listNodes()).find((n) => n.id === node.nodeId);
    expect({ ...byId, lastSeenMs: 0 }).toEqual({ ...listed, lastSeenMs: 0 });
    expect(byId).toMatchObject({
      id: node.nodeId, name: 'pi-list', state: 'connected', status: 'accepted', slots: 1, backends: ['cpu'],
      logSpoolBytes: 0, logDroppedTotal: 0,
    });
    expect((await control.getNode('pi-list')).id).toBe(node.nodeId);
    await expect(control.getNode('no-such-node')).rejects.toMatchObject(refusedWith(5, 'ORCH-SCHED-854'));
    const twin = await startTestNode({ orchestrator: o.orchestrator, name: 'pi-list', slots: 1 });
    try {
      await waitUntil(async () => (await control.listNodes()).some((n) => n.id === twin.nodeId && n.state === 'connected'), { what: 'the twin' });
      const refused = await refusalOf(control.getNode('pi-list'));
      expect(refused).toMatchObject(refusedWith(9, 'ORCH-SCHED-855'));
      expect(refused.details).toContain(node.nodeId);
      expect(refused.details).toContain(twin.nodeId);
      expect((await control.getNode(twin.nodeId)).id).toBe(twin.nodeId);
    } finally {
      await twin.close();
    }
  });

  it('RemoveModel is refused while a queued job needs the model, unless forced; its file goes unless another name shares it', async () => {
    const victim = affineModel({ seed: 31 });
    const info = await control.addModel('victim', victim.bytes);
    await control.addModel('victim-twin', victim.bytes);
    const file = join(o.orchestrator.dataDir, 'models', `${info.sha256}.onnx`);
    await drained(async () => {
      const job = await control.infer('victim', { x: tensorFromTypedArray('float32', [1, 4], new Float32Array(4)) });
      leftQueued.push(job.id);
      const refused = await refusalOf(control.removeModel('victim'));
      expect(refused).toMatchObject(refusedWith(9, 'ORCH-LOAD-106'));
      expect(refused.details).toContain(job.id);
      // No job needs the twin; the file stays, the victim has the same content.
      expect(await control.removeModel('victim-twin')).toMatchObject({ name: 'victim-twin', sha256: info.sha256 });
      await access(file);
      expect(await control.removeModel('victim', true)).toMatchObject({ name: 'victim', sha256: info.sha256 });
    });
    expect((await control.listModels()).map((m) => m.name)).toEqual(['affine']);
    await expect(access(file)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(control.removeModel('victim')).rejects.toMatchObject(refusedWith(5, 'ORCH-REQ-202'));
    await expect(control.infer('victim', affineInput())).rejects.toMatchObject(refusedWith(5, 'ORCH-REQ-202'));
  });
});

describe('Job.waiting: why a queued job waits', () => {
  let o: Awaited<ReturnType<typeof orchestratorWith>>;
  let control: TestControl;
  const submitted: string[] = [];

  beforeAll(async () => {
    o = await orchestratorWith();
    control = o.control;
    await control.addModel('affine', affine.bytes);
  });
  afterAll(async () => {
    for (const id of submitted) await control.cancel(id).catch(() => undefined);
    await o?.close();
  });

  const submit = async (request: Parameters<TestControl['submit']>[0]) => {
    const job = await control.submit(request);
    submitted.push(job.id);
    return job;
  };

  it('names what no node, connected or known from before, offers; nothing while one does', async () => {
    const node = await startTestNode({ orchestrator: o.orchestrator, name: 'cpu-only', slots: 1 });
    await waitUntil(async () => (await control.listNodes()).some((n) => n.id === node.nodeId && n.state === 'connected'), { what: 'the node' });
    await control.drainNode(node.nodeId);
    const hailo = await submit({ infer: { model: 'affine', inputs: affineInput() }, requirements: { accelerator: 'hailo' } });
    expect(hailo).toMatchObject({ waiting: 'no node offers accelerator "hailo"', requirements: { accelerator: 'hailo', capability: '' } });
    expect((await control.get(hailo.id)).waiting).toBe('no node offers accelerator "hailo"');
    const text = await submit({ generate: { prompt: 'hello' } });
    expect((await control.get(text.id))).toMatchObject({
      state: 'JOB_STATE_QUEUED', waiting: 'no node offers capability "text-generation"', requirements: { capability: 'text-generation' },
    });
    const cpu = await submit({ infer: { model: 'affine', inputs: affineInput() }, requirements: { accelerator: 'cpu' } });
    expect((await control.get(cpu.id))).toMatchObject({ state: 'JOB_STATE_QUEUED', waiting: '' });
    const listed = (await control.listJobs({ state: 'queued' })).jobs;
    expect(Object.fromEntries(listed.map((j) => [j.id, j.waiting]))).toEqual({
      [hailo.id]: 'no node offers accelerator "hailo"', [text.id]: 'no node offers capability "text-generation"', [cpu.id]: '',
    });
    // Gone, the node is still known: a job for what it offers waits for it without a word.
    await node.close();
    await waitUntil(async () => (await control.listNodes()).every((n) => n.state !== 'connected'), { what: 'the node gone' });
    const later = await submit({ infer: { model: 'affine', inputs: affineInput() }, requirements: { accelerator: 'cpu' } });
    expect((await control.get(later.id)).waiting).toBe('');
    expect((await control.get(hailo.id)).waiting).toBe('no node offers accelerator "hailo"');
  });
});

describe('job lifecycle lines', () => {
  const orchestratorLog = captureLogger('ORCH');
  const nodeLog = captureLogger('NODE');
  let o: Awaited<ReturnType<typeof orchestratorWith>>;
  let control: TestControl;
  let node: Awaited<ReturnType<typeof startTestNode>>;

  beforeAll(async () => {
    o = await orchestratorWith({ logger: orchestratorLog.logger });
    control = o.control;
    node = await startTestNode({ orchestrator: o.orchestrator, name: 'logged', slots: 1, logger: nodeLog.logger });
    await waitUntil(async () => (await control.listNodes()).some((n) => n.id === node.nodeId && n.state === 'connected'), { what: 'the node' });
    await control.addModel('affine', affine.bytes);
  });
  afterAll(async () => {
    await node?.close();
    await o?.close();
  });

  type Line = Record<string, unknown> & { level: string; section: string; message: string };
  /** The JOB lines above debug that carry the job's id, in order. */
  const linesOf = (log: { jsonLines: string[] }, jobId: string): Line[] =>
    log.jsonLines.map((l) => JSON.parse(l) as Line).filter((l) => l.jobId === jobId && l.section === 'JOB' && l.level !== 'debug');
  const messages = (lines: Line[]) => lines.map((l) => `${l.level} ${l.message}`);

  it('a completed job: queued, assigned to its node, completed with its timings; running and completed on the node', async () => {
    const job = await control.run('affine', affineInput());
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    const lines = await waitUntil(() => {
      const found = linesOf(orchestratorLog, job.id);
      return found.length >= 3 ? found : undefined;
    }, { what: 'the completed line' });
    expect(messages(lines)).toEqual(['info job queued', 'info job assigned', 'info job completed']);
    expect(lines.every((l) => l.attempt === 1)).toBe(true);
    expect(lines[1]).toMatchObject({ node: node.nodeId, nodeName: 'logged' });
    const end: Record<string, unknown> = lines[2] ?? {};
    // The lines give times to the hundredth of a millisecond; the job record keeps them whole.
    const toHundredth = (ms: number) => Math.round(ms * 100) / 100;
    expect(end).toMatchObject({ attempts: 1, runMs: toHundredth(job.runMs) });
    for (const key of ['queueMs', 'runMs', 'totalMs']) expect(typeof end[key], key).toBe('number');
    expect(Number(end.totalMs)).toBeGreaterThanOrEqual(Number(end.queueMs));
    const onNode = linesOf(nodeLog, job.id);
    expect(messages(onNode)).toEqual(['info job running', 'info job completed']);
    expect(onNode.every((l) => l.attempt === 1)).toBe(true);
    expect(onNode[1]?.runMs).toBe(toHundredth(job.runMs));
  });

  it('a job that times out waiting and two cancelled ones: one line each, with the code', async () => {
    await control.drainNode(node.nodeId);
    try {
      const held = await control.infer('affine', affineInput(), { timeoutMs: 60_000 });
      await waitUntil(async () => (await o.active()) === 1, { what: 'the job held by the dispatcher' });
      const queued = await control.infer('affine', affineInput());
      await control.cancel(queued.id);
      await control.cancel(held.id);
      await control.wait(held.id, 10_000);
      const timedOut = await control.infer('affine', affineInput(), { timeoutMs: 300 });
      expect((await control.wait(timedOut.id, 10_000)).state).toBe('JOB_STATE_FAILED');
      for (const [id, level, message, code] of [
        [queued.id, 'info', 'job cancelled', 'ORCH-JOB-803'], [held.id, 'info', 'job cancelled', 'ORCH-JOB-803'], [timedOut.id, 'warn', 'job failed', 'ORCH-JOB-802'],
      ] as const) {
        const lines = await waitUntil(() => {
          const found = linesOf(orchestratorLog, id);
          return found.length >= 2 ? found : undefined;
        }, { what: `the end of ${id}` });
        expect(messages(lines)).toEqual(['info job queued', `${level} ${message}`]);
        expect(lines[1]).toMatchObject({ code, attempt: 1, attempts: 0, runMs: 0 });
        expect(Number(lines[1]?.totalMs)).toBeGreaterThanOrEqual(Number(lines[1]?.queueMs));
      }
      expect(Number(linesOf(orchestratorLog, timedOut.id)[1]?.totalMs)).toBeGreaterThanOrEqual(300);
    } finally {
      await control.undrainNode(node.nodeId);
    }
  });

  it('a job its node fails: failed on the node with the run time, failed on the orchestrator with the node\'s code', async () => {
    const m = affineModel({ seed: 41 });
    const info = await control.addModel('lost', m.bytes);
    await rm(join(o.orchestrator.dataDir, 'models', `${info.sha256}.onnx`));
    const job = await control.run('lost', { x: tensorFromTypedArray('float32', [1, 4], new Float32Array(4)) });
    expect(job).toMatchObject({ state: 'JOB_STATE_FAILED', error: { code: 'NODE-LOAD-151' } });
    const lines = await waitUntil(() => {
      const found = linesOf(orchestratorLog, job.id);
      return found.length >= 3 ? found : undefined;
    }, { what: 'the failed line' });
    expect(messages(lines)).toEqual(['info job queued', 'info job assigned', 'warn job failed']);
    expect(lines[2]).toMatchObject({ code: 'NODE-LOAD-151', attempts: 1 });
    const onNode = linesOf(nodeLog, job.id);
    expect(messages(onNode)).toEqual(['info job running', 'warn job failed']);
    expect(onNode[1]).toMatchObject({ code: 'NODE-LOAD-151' });
    expect(typeof onNode[1]?.runMs).toBe('number');
  });
});
