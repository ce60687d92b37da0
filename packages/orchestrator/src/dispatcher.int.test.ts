// The dispatcher on a real Redis and BullMQ, against a fake fleet: real NodeSessions whose
// links record what the dispatcher sends and through which the test answers as the nodes.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError, nullLogger } from '@conclave/common';
import type { AssignJob, JobError__Output, JobResult__Output, OrchestratorMessage } from '@conclave/protocol';
import { startRedis, waitUntil } from '@conclave/testing';
import type { RedisServerHandle } from '@conclave/testing';
import { Dispatcher } from './dispatcher.js';
import type { DispatcherFleet, JobData } from './dispatcher.js';
import { JobStore } from './job-store.js';
import type { JobRecord, JobStateName, StoredTensor } from './job-store.js';
import type { NodeRegistryEvents } from './node-registry.js';
import { NodeSession } from './node-session.js';
import type { NodeLink } from './node-session.js';
import { BULL_PREFIX, JOB_QUEUE_NAME } from './redis-keys.js';
import type { JobNeeds } from './scheduling/scheduler.js';

const SHA = 'a'.repeat(64);
const WAIT = { timeoutMs: 10_000, intervalMs: 10 };

const retryable = (message: string): JobError__Output => ({ code: 'NODE-JOB-802', message, status: 'INTERNAL', retryable: true });

/** Where FakeNodes hand results no job waits for: the dispatcher of the test running now. */
let unmatchedResults: (session: NodeSession, result: JobResult__Output) => void = () => undefined;

/** A node as the dispatcher sees it: a real NodeSession over a link the test reads and answers through. */
class FakeNode {
  readonly session: NodeSession;
  private readonly sent: OrchestratorMessage[] = [];
  private readonly answered = new Set<string>();

  constructor(id: string, options: { slots?: number; storedModels?: string[]; runningJobs?: string[] } = {}) {
    const link: NodeLink = {
      backpressured: false,
      send: (message) => {
        this.sent.push(message);
        return true;
      },
      writable: () => Promise.resolve(),
      close: () => undefined,
    };
    this.session = new NodeSession({
      link,
      register: {
        nodeId: id, name: id, slots: options.slots ?? 2, models: options.storedModels ?? [], pendingResults: [], capabilities: null,
        runningJobs: options.runningJobs ?? [],
      },
      logger: nullLogger,
      address: 'fake',
      fingerprint: 'SHA256:fake',
      onFetchModel: () => undefined,
      onUnmatchedResult: (session, result) => unmatchedResults(session, result),
      maxSlots: 16,
    });
  }

  /** `jobId:attempt` of every ResultAck the node got. */
  acks(): string[] {
    return this.sent.flatMap((m) => (m.resultAck ? [`${m.resultAck.jobId ?? ''}:${m.resultAck.attempt ?? 0}`] : []));
  }

  assigns(jobId?: string): AssignJob[] {
    return this.sent.flatMap((m) => (m.assign && (jobId === undefined || m.assign.jobId === jobId) ? [m.assign] : []));
  }

  cancels(jobId: string): unknown[] {
    return this.sent.flatMap((m) => (m.cancel?.jobId === jobId ? [m.cancel] : []));
  }

  /** Assignments the node got and neither answered nor was told to cancel, as seen on its link. */
  inFlight(): AssignJob[] {
    const cancelled = new Set(this.sent.flatMap((m) => (m.cancel ? [`${m.cancel.jobId ?? ''}:${m.cancel.attempt ?? 0}`] : [])));
    return this.assigns().filter((a) => !this.answered.has(key(a)) && !cancelled.has(key(a)));
  }

  heartbeat(loadedModels: string[]): void {
    this.session.receive({
      body: 'heartbeat',
      heartbeat: { slots: this.session.slots, loadedModels, memoryUsedBytes: 0, backendActive: '', sentAtMs: 0, runningJobs: [], accelerator: null, modelBackends: [] },
    });
  }

  /** Answers with one output tensor `y` holding `value`. */
  succeed(jobId: string, attempt: number, value = 1): void {
    this.answered.add(`${jobId}:${attempt}`);
    const y = { dtype: 'float32', dims: [1], raw: Buffer.from(new Float32Array([value]).buffer) };
    this.session.receive({
      body: 'result',
      result: { jobId, attempt, outcome: 'outputs', outputs: { tensors: { y } }, error: null, generated: null, runMs: 1, queueMs: 0 },
    });
  }

  fail(jobId: string, attempt: number, error: JobError__Output): void {
    this.answered.add(`${jobId}:${attempt}`);
    this.session.receive({
      body: 'result',
      result: { jobId, attempt, outcome: 'error', outputs: null, error, generated: null, runMs: 1, queueMs: 0 },
    });
  }
}

function key(a: AssignJob): string {
  return `${a.jobId ?? ''}:${a.attempt ?? 0}`;
}

/** What the dispatcher uses of NodeRegistry, over FakeNodes: capacity events come from here alone. */
class FakeFleet extends EventEmitter<NodeRegistryEvents> implements DispatcherFleet {
  private readonly sessions = new Map<string, NodeSession>();

  add(node: FakeNode): void {
    const session = node.session;
    this.sessions.set(session.id, session);
    session.on('capacity', () => this.changed());
    session.once('closed', () => {
      this.sessions.delete(session.id);
      this.changed();
    });
    this.changed();
  }

  snapshots() {
    return [...this.sessions.values()].map((s) => s.snapshot());
  }

  get(nodeId: string): NodeSession | undefined {
    return this.sessions.get(nodeId);
  }

  totalSlots(): number {
    let slots = 0;
    for (const s of this.sessions.values()) if (s.schedulable) slots += s.slots;
    return slots;
  }

  private changed(): void {
    this.emit('changed');
    this.emit('capacity');
  }
}

function valueOf(outputs: Record<string, StoredTensor> | undefined): number | undefined {
  const raw = outputs?.y?.raw;
  return raw === undefined ? undefined : Buffer.from(raw, 'base64').readFloatLE(0);
}

describe('Dispatcher against a fake fleet', () => {
  let server: RedisServerHandle;
  // Each test has its own Redis database: its own queue, job records and BullMQ keys.
  let db = 0;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    server = await startRedis();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await server?.stop();
  });

  async function setup(nodes: FakeNode[], options: { start?: boolean } = {}) {
    db += 1;
    const redis = new Redis({ host: server.host, port: server.port, db, maxRetriesPerRequest: null });
    cleanups.push(async () => {
      await redis.flushdb();
      await redis.quit();
    });
    const fleet = new FakeFleet();
    for (const node of nodes) fleet.add(node);
    const jobs = new JobStore(redis, 60);
    const queue = new Queue<JobData>(JOB_QUEUE_NAME, { connection: redis, prefix: BULL_PREFIX });
    cleanups.push(() => queue.close());
    const startDispatcher = async () => {
      const started = new Dispatcher({ redis, registry: fleet, jobs, logger: nullLogger });
      cleanups.push(() => started.close());
      unmatchedResults = (session, result) => void started.recordUnmatchedResult(session, result);
      started.start();
      await started.ready();
      return started;
    };
    const dispatcher = options.start === false ? undefined : await startDispatcher();

    /** Queues a job as SubmitJob does: its record, then its BullMQ entry. */
    async function submit(options: { needs?: JobNeeds; timeoutMs?: number; attempts?: number; id?: string } = {}): Promise<string> {
      const id = options.id ?? randomUUID();
      if (!(await jobs.get(id))) await jobs.create(newRecord(id));
      const data: JobData = {
        kind: 'infer',
        model: { name: 'm', sha256: SHA, size: 1, inputs: [], outputs: [] },
        inputs: {},
        needs: options.needs ?? { modelSha256: SHA },
        timeoutMs: options.timeoutMs ?? 30_000,
      };
      await queue.add('infer', data, {
        jobId: id, attempts: options.attempts ?? 1, backoff: { type: 'fixed', delay: 10 }, removeOnComplete: true, removeOnFail: true,
      });
      return id;
    }

    const state = (id: string, want: JobStateName): Promise<JobRecord> =>
      waitUntil(async () => {
        const record = await jobs.get(id);
        return record?.state === want ? record : undefined;
      }, { ...WAIT, what: `job ${id} ${want}` });

    /** BullMQ is done with the job (removeOnComplete/removeOnFail): no attempt of it can follow. */
    const settled = (id: string) => waitUntil(async () => (await queue.getJob(id)) === undefined, { ...WAIT, what: `job ${id} out of BullMQ` });

    /**
     * The state a crashed orchestrator leaves a job in, once BullMQ's stalled check has put it
     * back: its record says it runs on `node`, and BullMQ counts a start that never ended.
     */
    async function interrupted(node: string, attempt = 1): Promise<string> {
      const id = randomUUID();
      await jobs.create({ ...newRecord(id), state: 'running', node, attempts: attempt });
      await submit({ id });
      await redis.hset(`${BULL_PREFIX}:${JOB_QUEUE_NAME}:${id}`, 'ats', String(attempt));
      return id;
    }

    return { fleet, jobs, queue, dispatcher: dispatcher as Dispatcher, submit, state, settled, startDispatcher, interrupted, redis };
  }

  const assigned = (node: FakeNode, id: string, attempt: number) =>
    waitUntil(() => node.assigns(id).some((a) => a.attempt === attempt), { ...WAIT, what: `job ${id} attempt ${attempt} on ${node.session.id}` });

  it('cancels a running job: the node is told to stop, the job ends CANCELLED and is not retried', async () => {
    const node = new FakeNode('n1');
    const h = await setup([node]);
    const id = await h.submit({ attempts: 3 });
    await assigned(node, id, 1);

    expect(h.dispatcher.cancel(id)).toBe(true);
    const ended = await h.state(id, 'cancelled');
    expect(ended.error).toMatchObject({ code: 'ORCH-JOB-803', retryable: false });
    expect(node.cancels(id)).toEqual([expect.objectContaining({ jobId: id, attempt: 1 })]);
    expect(node.session.running).toBe(0);

    // The node's result for the cancelled attempt changes nothing, and BullMQ runs it no more.
    node.succeed(id, 1);
    await h.settled(id);
    expect(node.assigns(id)).toHaveLength(1);
    expect((await h.jobs.get(id))?.state).toBe('cancelled');
    expect(h.dispatcher.cancel(id)).toBe(false);
  });

  it('fails an attempt past its timeout with ORCH-JOB-802, tells the node to stop, and does not retry it', async () => {
    const node = new FakeNode('n1');
    const h = await setup([node]);
    const id = await h.submit({ timeoutMs: 300, attempts: 3 });
    await assigned(node, id, 1);

    const ended = await h.state(id, 'failed');
    expect(ended.error).toMatchObject({ code: 'ORCH-JOB-802', retryable: false });
    expect(ended.error?.message).toContain('after 300 ms');
    expect(ended.attempts).toBe(1);
    expect(node.cancels(id)).toEqual([expect.objectContaining({ jobId: id, attempt: 1 })]);
    expect(node.session.running).toBe(0);
    // A timed-out job fails for good (docs/architecture.md): no attempt 2.
    await h.settled(id);
    expect(node.assigns(id).map((a) => a.attempt)).toEqual([1]);
  });

  it('counts the wait for a node in the timeout: a job no node can take fails with ORCH-JOB-802', async () => {
    const node = new FakeNode('n1');
    const h = await setup([node]);
    const id = await h.submit({ timeoutMs: 300, needs: { accelerator: 'hailo' } });
    const ended = await h.state(id, 'failed');
    expect(ended.error?.code).toBe('ORCH-JOB-802');
    expect(node.assigns()).toEqual([]);
  });

  it('retries a retryable failure with attempt+1, and after the last attempt fails with ORCH-JOB-804 naming the last error', async () => {
    const node = new FakeNode('n1');
    const h = await setup([node]);
    const id = await h.submit({ attempts: 3 });
    for (let attempt = 1; attempt <= 3; attempt++) {
      await assigned(node, id, attempt);
      node.fail(id, attempt, retryable(`boom ${attempt}`));
    }
    const ended = await h.state(id, 'failed');
    expect(node.assigns(id).map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(ended.attempts).toBe(3);
    expect(ended.error).toMatchObject({ code: 'ORCH-JOB-804', retryable: false });
    expect(ended.error?.message).toContain('3 attempts; last: NODE-JOB-802 boom 3');
    await h.settled(id);
    expect(node.assigns(id)).toHaveLength(3);
  });

  it('ignores a late result of an earlier attempt, and any result once the job ended', async () => {
    const node = new FakeNode('n1');
    const h = await setup([node]);
    const id = await h.submit({ attempts: 3 });
    await assigned(node, id, 1);
    node.fail(id, 1, retryable('node restarting'));
    await assigned(node, id, 2);

    // Attempt 1's result arrives again while attempt 2 runs (resent from the node's outbox, say).
    node.succeed(id, 1, 111);
    node.succeed(id, 2, 222);
    const done = await h.state(id, 'completed');
    expect(done.attempts).toBe(2);
    expect(valueOf(done.outputs)).toBe(222);

    // After the end, neither attempt's late result moves the job.
    node.fail(id, 2, { code: 'NODE-LOAD-151', message: 'late failure', status: 'FAILED_PRECONDITION', retryable: false });
    node.succeed(id, 1, 333);
    // A job through the same node after them: by its end the late results were handled.
    const next = await h.submit();
    await assigned(node, next, 1);
    node.succeed(next, 1);
    await h.state(next, 'completed');
    const after = await h.jobs.get(id);
    expect(after).toMatchObject({ state: 'completed', attempts: 2 });
    expect(valueOf(after?.outputs)).toBe(222);
  });

  it('leaves a job that ended before the dispatcher got to it in its first terminal state (cancelled during pick-up)', async () => {
    const node = new FakeNode('n1');
    const h = await setup([node]);
    // CancelJob on a job this orchestrator does not run yet marks the record; BullMQ may have
    // handed the entry to the worker already, so the job still runs once.
    const id = randomUUID();
    await h.jobs.create(newRecord(id));
    await h.jobs.update(id, { state: 'cancelled', finishedAtMs: Date.now() });
    await h.submit({ id });
    await assigned(node, id, 1);
    node.succeed(id, 1);
    await h.settled(id);
    expect(await h.jobs.get(id)).toMatchObject({ state: 'cancelled', node: '', attempts: 0 });
    expect((await h.jobs.get(id))?.outputs).toBeUndefined();
  });

  it("places a job on the node that has its model loaded (the heartbeat's loadedModels) before one that has it on disk", async () => {
    const onDisk = new FakeNode('on-disk', { storedModels: [SHA] });
    const loaded = new FakeNode('loaded');
    const h = await setup([onDisk, loaded]);
    loaded.heartbeat([SHA]);
    for (let i = 0; i < 3; i++) {
      const id = await h.submit({ needs: { modelSha256: SHA } });
      await waitUntil(() => loaded.assigns(id).length + onDisk.assigns(id).length === 1, { ...WAIT, what: `job ${i} placed` });
      expect(loaded.assigns(id)).toHaveLength(1);
      loaded.succeed(id, 1);
      await h.state(id, 'completed');
    }
    expect(onDisk.assigns()).toEqual([]);
  });

  it("runs as many jobs at once as the fleet has slots, following the fleet as nodes join (3 nodes × 2 slots → 6)", async () => {
    const h = await setup([]);
    const nodes = [new FakeNode('a'), new FakeNode('b'), new FakeNode('c')];
    // Joining after the start: the dispatcher follows the fleet's 'changed' events.
    for (const node of nodes) h.fleet.add(node);
    const ids = await Promise.all(Array.from({ length: 8 }, () => h.submit()));
    const inFlight = () => nodes.reduce((sum, n) => sum + n.inFlight().length, 0);
    await waitUntil(() => inFlight() === 6, { ...WAIT, what: '6 jobs in flight' });
    expect(nodes.map((n) => n.inFlight().length)).toEqual([2, 2, 2]);

    // Answer whatever is in flight until all 8 are done; the last 2 run as slots free up.
    const answered = new Set<string>();
    await waitUntil(async () => {
      for (const node of nodes) {
        for (const a of node.inFlight()) {
          answered.add(a.jobId ?? '');
          node.succeed(a.jobId ?? '', a.attempt ?? 0);
        }
      }
      const records = await Promise.all(ids.map((id) => h.jobs.get(id)));
      return records.every((r) => r?.state === 'completed');
    }, { ...WAIT, what: 'all 8 completed' });
    expect(answered).toEqual(new Set(ids));
  });

  it('a graceful stop cancels nothing: jobs go back to the queue as they are, and the next dispatcher adopts the one its node still runs', async () => {
    const node = new FakeNode('n1', { slots: 2 });
    const h = await setup([node]);
    const running = await h.submit();
    await assigned(node, running, 1);
    // Picked up, waiting inside the dispatcher for a node that can take it (the oldest such job
    // was the one a stop used to cancel).
    const waiting = await h.submit({ needs: { accelerator: 'hailo' } });
    await waitUntil(async () => (await (await h.queue.getJob(waiting))?.getState()) === 'active', { ...WAIT, what: 'second job picked up' });

    await h.dispatcher.close();
    expect(await h.jobs.get(running)).toMatchObject({ state: 'running', node: 'n1', attempts: 1 });
    expect(await h.jobs.get(waiting)).toMatchObject({ state: 'queued' });
    for (const id of [running, waiting]) expect(['waiting', 'prioritized']).toContain(await (await h.queue.getJob(id))?.getState());
    expect(node.cancels(running)).toEqual([]);

    // The node re-attaches to the next orchestrator still running the job.
    node.session.close(new ConclaveError('ORCH-NET-602', { detail: 'orchestrator stopped' }));
    const back = new FakeNode('n1', { slots: 2, runningJobs: [`${running}:1`] });
    h.fleet.add(back);
    await h.startDispatcher();
    // Adopted, not sent again: the node finishes it and the record takes that result.
    await waitUntil(() => back.session.running === 1, { ...WAIT, what: 'job adopted' });
    expect(back.assigns(running)).toEqual([]);
    back.succeed(running, 1, 7);
    const done = await h.state(running, 'completed');
    expect(valueOf(done.outputs)).toBe(7);
    expect(back.acks()).toContain(`${running}:1`);
    await h.settled(running);
    // The waiting one waits on, in the queue's hands, not cancelled.
    expect(await h.jobs.get(waiting)).toMatchObject({ state: 'queued' });
    expect((await h.jobs.get(waiting))?.error).toBeUndefined();
    expect(back.assigns(running)).toEqual([]);
  });

  it('after a crash, a job whose node re-attached with its result in the outbox is completed from that result, not run again', async () => {
    const h = await setup([], { start: false });
    const id = await h.interrupted('n1');
    const node = new FakeNode('n1');
    // Register said the result waits in the outbox.
    (node.session as unknown as { outboxJobs: Set<string> }).outboxJobs.add(`${id}:1`);
    h.fleet.add(node);
    await h.startDispatcher();
    await waitUntil(() => node.session.running === 1, { ...WAIT, what: 'job adopted' });
    node.succeed(id, 1, 5);
    expect(valueOf((await h.state(id, 'completed')).outputs)).toBe(5);
    await h.settled(id);
    expect(node.assigns(id)).toEqual([]);
    expect(node.acks()).toEqual([`${id}:1`]);
  });

  it('records a result no job waits for (an earlier session\'s, resent from the outbox) and acknowledges it; an older attempt\'s is acknowledged only', async () => {
    const node = new FakeNode('n1');
    const stranger = new FakeNode('n2');
    const h = await setup([node, stranger]);
    const id = randomUUID();
    await h.jobs.create({ ...newRecord(id), state: 'running', node: 'n1', attempts: 2 });
    // Another enrolled node cannot hand in a result for a job it was never given.
    stranger.succeed(id, 2, 666);
    await waitUntil(() => stranger.acks().includes(`${id}:2`), { ...WAIT, what: "stranger's result acknowledged" });
    expect((await h.jobs.get(id))?.state).toBe('running');
    node.succeed(id, 1, 1);
    await waitUntil(() => node.acks().includes(`${id}:1`), { ...WAIT, what: 'old attempt acknowledged' });
    expect((await h.jobs.get(id))?.state).toBe('running');
    node.succeed(id, 2, 2);
    expect(valueOf((await h.state(id, 'completed')).outputs)).toBe(2);
    await waitUntil(() => node.acks().includes(`${id}:2`), { ...WAIT, what: 'result acknowledged' });
  });

  it('runs an interrupted job again, same attempt, when its node is back without it', async () => {
    const h = await setup([], { start: false });
    const id = await h.interrupted('n1');
    const node = new FakeNode('n1');
    h.fleet.add(node);
    await h.startDispatcher();
    await assigned(node, id, 1);
    node.succeed(id, 1);
    await h.state(id, 'completed');
  });

  it('does not run an interrupted job that had already ended', async () => {
    const node = new FakeNode('n1');
    const h = await setup([node], { start: false });
    const id = await h.interrupted('n1');
    await h.jobs.update(id, { state: 'completed', finishedAtMs: Date.now() });
    await h.startDispatcher();
    await h.settled(id);
    expect(node.assigns(id)).toEqual([]);
  });
});

function newRecord(id: string): JobRecord {
  return { id, state: 'queued', kind: 'infer', model: 'm', node: '', attempts: 0, createdAtMs: Date.now(), finishedAtMs: 0, runMs: 0 };
}
