import { once } from 'node:events';
import type { EventEmitter } from 'node:events';
import { UnrecoverableError, WaitingError, Worker } from 'bullmq';
import type { Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { ConclaveError, isConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { jobErrorOf } from '@conclave/protocol';
import type { AssignJob, GenerateRequest, JobError, JobResult__Output, ModelRef } from '@conclave/protocol';
import type { JobRecord, JobStore } from './job-store.js';
import { jobTimings, loadTensors, storeTensors, TERMINAL_STATES } from './job-store.js';
import type { StoredTensor } from './job-store.js';
import type { NodeRegistryEvents } from './node-registry.js';
import type { NodeSession } from './node-session.js';
import { BULL_PREFIX, JOB_QUEUE_NAME } from './redis-keys.js';
import { redisAvailable } from './redis-connection.js';
import { pickNode, unmetNeed } from './scheduling/scheduler.js';
import type { JobNeeds, NodeSnapshot } from './scheduling/scheduler.js';

/** What a queued job carries in BullMQ (tensors as base64: BullMQ stores job data as JSON). */
export interface JobData {
  kind: 'infer' | 'generate';
  model?: ModelRef;
  inputs?: Record<string, StoredTensor>;
  generate?: GenerateRequest;
  needs: JobNeeds;
  timeoutMs: number;
}

/**
 * What the dispatcher uses of the fleet: NodeRegistry in the orchestrator, a fake registry of
 * NodeSessions over fake links in its tests. 'changed' resizes the concurrency, 'capacity'
 * wakes the jobs waiting for a node.
 */
export interface DispatcherFleet extends EventEmitter<NodeRegistryEvents> {
  snapshots(): NodeSnapshot[];
  get(nodeId: string): NodeSession | undefined;
  /** Slots across the nodes that take work. */
  totalSlots(): number;
}

export interface DispatcherOptions {
  redis: Redis;
  registry: DispatcherFleet;
  jobs: JobStore;
  logger: Logger;
}

class CancelledByClient extends Error {}
class AttemptTimedOut extends Error {}
/** The orchestrator is stopping: the job goes back to the queue as it is, its node keeps running it. */
class HandedBack extends Error {}
/** The job's result came by another way (its node's outbox after a restart): nothing left to do. */
class FinishedElsewhere extends Error {}

/**
 * BullMQ's lock on a job being processed, renewed every half of it. After a crash the lock
 * lapses and the stalled check (every STALLED_CHECK_MS) hands the job to the next orchestrator:
 * within 15 s of the crash, where BullMQ's defaults took up to 60 s.
 */
const LOCK_DURATION_MS = 10_000;
const STALLED_CHECK_MS = 5_000;
/**
 * Each orchestrator crash stalls the jobs it ran; BullMQ fails a job stalled more often than
 * this, which would end a job for its orchestrator's faults. Attempts bound the node's faults.
 */
const MAX_STALLED_COUNT = 1_000;
/**
 * How long a job interrupted by an orchestrator restart waits for the node that ran it to
 * re-attach (nodes do within 10 s) before it runs again elsewhere.
 */
export const ADOPTION_WAIT_MS = 10_000;
/** A failure the node reported for the attempt, carried as the node coded it. */
class NodeReportedError extends Error {
  constructor(readonly error: JobError) {
    super(`${error.code ?? ''} ${error.message ?? ''}`);
  }
}

/**
 * The BullMQ worker inside the orchestrator. Each job waits for a node that can run it
 * (capacity events wake it), goes down that node's session, and completes with the node's
 * result. Concurrency follows the fleet's slot count. A lost node fails the attempt with a
 * retryable error, so BullMQ brings the job back with attempt+1 and backoff.
 *
 * An orchestrator restart loses and repeats nothing: a graceful stop hands its jobs back to
 * the queue as they are, a crash leaves them to BullMQ's stalled check, and the next
 * orchestrator adopts each one still running on its node (or already finished there) instead
 * of running it again. Results are acknowledged to the node only once recorded.
 */
export class Dispatcher {
  private readonly worker: Worker<JobData>;
  private readonly active = new Map<string, AbortController>();
  /** Jobs being processed here: one BullMQ hands over again (its lock lapsed) waits for the first. */
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly onFleetChange = () => this.resize();
  private closing: Promise<void> | undefined;

  constructor(private readonly options: DispatcherOptions) {
    this.worker = new Worker<JobData>(JOB_QUEUE_NAME, (job, token) => this.processOnce(job, token ?? ''), {
      connection: options.redis,
      prefix: BULL_PREFIX,
      concurrency: 1,
      autorun: false,
      // The lock is renewed on a timer, so a job waiting inside the processor for a node is no stall.
      lockDuration: LOCK_DURATION_MS,
      stalledInterval: STALLED_CHECK_MS,
      maxStalledCount: MAX_STALLED_COUNT,
    });
    this.worker.on('error', (err) => options.logger.warn('JOB', 'queue worker error', { err }));
  }

  start(): void {
    this.options.registry.on('changed', this.onFleetChange);
    this.resize();
    void this.worker.run().catch((err: unknown) => this.options.logger.error('JOB', 'queue worker stopped', { err }));
  }

  /**
   * Resolves once the worker's Redis connections are up. Closing BullMQ while its blocking
   * connection still connects emits an 'error' nobody listens to and kills the process.
   */
  async ready(): Promise<void> {
    await this.worker.waitUntilReady();
  }

  /**
   * Stops taking jobs and hands every job in progress back to the queue unchanged: nothing is
   * cancelled, and what a node runs goes on there, for the next orchestrator to adopt. Call it
   * before node sessions close, or their jobs would fail over as lost.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.options.registry.off('changed', this.onFleetChange);
      for (const controller of this.active.values()) controller.abort(new HandedBack());
      // With Redis away a graceful close never returns, and nothing can be handed back without
      // Redis anyway: BullMQ's stalled check gives those jobs to the next orchestrator.
      await this.worker.close(!redisAvailable(this.options.redis));
    })();
    return this.closing;
  }

  /**
   * A result no job here waits for (the node's outbox after a restart, a run from before a
   * reconnect): recorded if the job is still open, then acknowledged. A run of the same job in
   * progress here stops, as finished elsewhere. If Redis cannot record it, it stays with the
   * session unacknowledged, and the node sends it again.
   */
  async recordUnmatchedResult(node: NodeSession, result: JobResult__Output): Promise<void> {
    const { jobId: id, attempt } = result;
    const log = this.options.logger.child({ jobId: id, attempt, node: node.id });
    const change = resultChange(node, result);
    try {
      // Only the node the record says runs the job, and only for its latest attempt: an older
      // attempt's result came after a newer one started, and any other node's is not its to
      // give (an enrolled node could otherwise complete any job with outputs of its own).
      const current = change ? await this.options.jobs.peek(id) : undefined;
      const ours = current !== undefined && current.node === node.id && current.attempts === attempt;
      const { applied, record } = change && ours ? await this.options.jobs.tryUpdate(id, change) : { applied: false, record: undefined };
      node.acknowledge(id, attempt);
      if (!applied) {
        log.debug('JOB', 'late or duplicate result ignored', { outcome: result.outcome });
        return;
      }
      log.info('JOB', 'result of an earlier run recorded', {
        outcome: result.outcome, state: record?.state, ...(record?.error ? { code: record.error.code } : {}), ...(record ? jobTimings(record) : {}),
      });
      this.active.get(id)?.abort(new FinishedElsewhere());
    } catch (err) {
      node.releaseResult(id, attempt);
      log.warn('STATE', 'could not record a result; the node keeps it and sends it again', { err });
    }
  }

  /** Cancels a running job; returns false when this orchestrator is not running it. */
  cancel(jobId: string): boolean {
    const controller = this.active.get(jobId);
    if (!controller) return false;
    controller.abort(new CancelledByClient('cancelled by client'));
    return true;
  }

  private resize(): void {
    // At least one, so that a job can wait for the first node to join.
    const slots = Math.max(1, this.options.registry.totalSlots());
    if (this.worker.concurrency !== slots) this.worker.concurrency = slots;
  }

  /** BullMQ may hand a job over again while it is still processed here (its lock lapsed in a Redis outage). */
  private async processOnce(job: BullJob<JobData>, token: string): Promise<void> {
    const id = job.id ?? '';
    const earlier = this.inFlight.get(id);
    // Registered before waiting, so that a third hand-over waits for this one, not the first.
    const run = (earlier ? earlier.catch(() => undefined) : Promise.resolve()).then(() => this.process(job, token, earlier !== undefined));
    this.inFlight.set(id, run);
    try {
      await run;
    } finally {
      if (this.inFlight.get(id) === run) this.inFlight.delete(id);
    }
  }

  private async process(job: BullJob<JobData>, token: string, handedOverAgain: boolean): Promise<void> {
    const { jobs, logger } = this.options;
    const id = job.id ?? '';
    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? 1;
    const log = logger.child({ jobId: id, attempt });
    if (this.closing) return this.handBack(job, token);
    // A job cancelled while queued was removed from the queue; one cancelled in the instant
    // between its pick-up and here still runs, and its result is refused by the record (a
    // job that has ended never changes), so a job's first run reads nothing.
    // A job started before and neither finished nor failed since was interrupted (a restart,
    // a lapsed lock): its record says whether it ended, or where it ran.
    const interrupted = handedOverAgain || job.attemptsStarted > job.attemptsMade + 1;

    const controller = new AbortController();
    this.active.set(id, controller);
    const timer = setTimeout(() => controller.abort(new AttemptTimedOut()), job.data.timeoutMs);
    let node: NodeSession | undefined;
    let result: JobResult__Output | undefined;
    try {
      const record = interrupted ? await jobs.peek(id) : undefined;
      if (record && TERMINAL_STATES.has(record.state)) {
        log.debug('JOB', 'interrupted job had already ended; not run again', { state: record.state });
        return;
      }
      const adopted = record?.state === 'running' && record.attempts === attempt
        ? await this.adopt(record.node, id, attempt, controller.signal, log)
        : undefined;
      const placed = adopted ?? await this.assignToNode(job.data.needs, controller.signal, {
        jobId: id, attempt, kind: job.data.kind, timeoutMs: job.data.timeoutMs,
        ...(job.data.model ? { model: job.data.model } : {}),
        ...(job.data.inputs ? { inputs: loadTensors(job.data.inputs) } : {}),
        ...(job.data.generate ? { generate: job.data.generate } : {}),
      });
      node = placed.node;
      // Recorded while the node works rather than before sending: one Redis round trip
      // less on every job's path. Awaited before the outcome is recorded, so it never lands last.
      const recorded = adopted ? Promise.resolve() : jobs.update(id, { state: 'running', node: node.id, attempts: attempt, startedAtMs: Date.now() }).then(
        () => undefined,
        (err: unknown) => log.warn('STATE', 'could not record the running state', { err }),
      );
      // An adopted job has its line from adopt().
      if (!adopted) log.info('JOB', 'job assigned', { node: node.id, nodeName: node.name, queueMs: Math.max(0, Date.now() - job.timestamp) });
      result = await abortable(placed.assigned, controller.signal).finally(() => recorded);
      await this.finish(job, result, log);
      node.acknowledge(id, attempt);
    } catch (err) {
      // Once the node's result is in, an abort (timeout, hand-back) came too late to matter.
      const reason: unknown = !result && controller.signal.aborted ? controller.signal.reason : err;
      if (reason instanceof HandedBack) return this.handBack(job, token);
      if (reason instanceof FinishedElsewhere) {
        node?.abandon(id, attempt, 'finished elsewhere');
        return;
      }
      if (result && !(reason instanceof NodeReportedError)) {
        // The node's result could not be recorded (Redis): it stays with the session,
        // unacknowledged, and the job goes back as it is (no attempt spent), for its next run to
        // adopt the result. If Redis cannot take even that, BullMQ's stalled check does it later.
        node?.releaseResult(id, attempt);
        log.warn('STATE', 'could not record the result; the job goes back to the queue to take it again', { err: reason });
        return this.handBack(job, token);
      }
      if (node && !result) {
        node.abandon(id, attempt, reason instanceof Error ? reason.message : 'abandoned');
        // A result that came in the instant the attempt was given up is not needed: let the node drop it.
        if (node.resultFor(id, attempt)) node.acknowledge(id, attempt);
      }
      if (reason instanceof UnrecoverableError) throw reason;
      const toThrow = await this.fail(job, reason, attempt, maxAttempts, log, node !== undefined).catch((recordErr: unknown) => {
        if (result) node?.releaseResult(id, attempt);
        throw recordErr;
      });
      // The node's failure report is recorded: it may forget it.
      if (result) node?.acknowledge(id, attempt);
      throw toThrow;
    } finally {
      clearTimeout(timer);
      // The freed slot reaches waiting jobs as the registry's capacity event, from the node's session.
      this.active.delete(id);
    }
  }

  /** Back to the queue as it is: attempt, record and the node's work untouched. */
  private async handBack(job: BullJob<JobData>, token: string): Promise<never> {
    await job.moveToWait(token);
    throw new WaitingError();
  }

  /**
   * Takes over a job interrupted on `nodeId` if that node, once re-attached (within
   * ADOPTION_WAIT_MS), still runs it or holds its result; otherwise the job runs again.
   */
  private async adopt(
    nodeId: string, id: string, attempt: number, signal: AbortSignal, log: Logger,
  ): Promise<{ node: NodeSession; assigned: Promise<JobResult__Output> } | undefined> {
    const { registry } = this.options;
    const wait = AbortSignal.any([signal, AbortSignal.timeout(ADOPTION_WAIT_MS)]);
    let session = registry.get(nodeId);
    while (!session || session.isClosed) {
      try {
        await once(registry, 'changed', { signal: wait });
      } catch (err) {
        signal.throwIfAborted();
        log.info('JOB', 'interrupted job\'s node did not come back; running it again', { node: nodeId, waitedMs: ADOPTION_WAIT_MS, err });
        return undefined;
      }
      session = registry.get(nodeId);
    }
    if (!session.hasJob(id, attempt)) {
      log.info('JOB', 'interrupted job is not on its node any more; running it again', { node: nodeId });
      return undefined;
    }
    const assigned = session.adopt(id, attempt);
    void assigned.catch(() => undefined);
    log.info('JOB', 'interrupted job adopted from its node', { node: nodeId });
    return { node: session, assigned };
  }

  private async finish(job: BullJob<JobData>, result: JobResult__Output, log: Logger): Promise<void> {
    const id = job.id ?? '';
    if (result.outcome === 'error' && result.error) {
      throw new NodeReportedError(result.error);
    }
    const { applied, record } = await this.options.jobs.tryUpdate(id, {
      state: 'completed', finishedAtMs: Date.now(), runMs: result.runMs,
      ...(result.outputs ? { outputs: storeTensors(result.outputs.tensors) } : {}),
      ...(result.generated ? { generated: result.generated } : {}),
    });
    if (applied && record) log.info('JOB', 'job completed', jobTimings(record));
    else log.debug('JOB', 'result not recorded: the job had already ended', { state: record?.state ?? 'expired' });
  }

  /**
   * Records why the attempt failed (`placed`: it had a node); returns what to throw to BullMQ
   * (retry, or the end). The job's end is logged only when this attempt's change ended it.
   */
  private async fail(job: BullJob<JobData>, reason: unknown, attempt: number, maxAttempts: number, log: Logger, placed: boolean): Promise<Error> {
    const id = job.id ?? '';
    const { jobs } = this.options;
    const end = async (state: 'failed' | 'cancelled', error: JobError, message: string): Promise<void> => {
      const { applied, record } = await jobs.tryUpdate(id, { state, error, finishedAtMs: Date.now() });
      if (!applied || !record) return;
      const meta = { code: error.code, ...jobTimings(record) };
      if (state === 'cancelled') log.info('JOB', message, meta);
      else log.warn('JOB', message, { ...meta, err: error.message });
    };
    if (reason instanceof CancelledByClient) {
      await end('cancelled', jobErrorOf(new ConclaveError('ORCH-JOB-803', { detail: reason.message })), 'job cancelled');
      return new UnrecoverableError(reason.message);
    }
    if (reason instanceof AttemptTimedOut) {
      // A job that never got a node says why, when no connected node could ever have taken it.
      const unmet = placed ? undefined : unmetNeed(this.options.registry.snapshots(), job.data.needs);
      const detail = `after ${job.data.timeoutMs} ms${unmet ? ` without a node; among those connected, ${unmet}` : ''}`;
      const error = new ConclaveError('ORCH-JOB-802', { detail });
      await end('failed', jobErrorOf(error), 'job failed');
      return new UnrecoverableError(error.message);
    }
    const error: JobError =
      reason instanceof NodeReportedError ? reason.error
      : isConclaveError(reason) ? jobErrorOf(reason)
      : jobErrorOf(new ConclaveError('ORCH-JOB-804', { detail: reason instanceof Error ? reason.message : String(reason) }));
    if (error.retryable && attempt < maxAttempts) {
      log.warn('JOB', 'attempt failed, will retry', { code: error.code, err: error.message });
      await jobs.update(id, { state: 'queued', error });
      return reason instanceof Error ? reason : new Error(String(reason));
    }
    // A retryable failure on the last attempt becomes ORCH-JOB-804, which names the last cause.
    const final = error.retryable
      ? jobErrorOf(new ConclaveError('ORCH-JOB-804', { detail: `${attempt} attempts; last: ${error.code ?? ''} ${error.message ?? ''}` }))
      : error;
    await end('failed', final, 'job failed');
    return new UnrecoverableError(final.message ?? 'job failed');
  }

  /**
   * Waits (for capacity events, until aborted) for a node that can take the job and assigns
   * it there in the same tick as the choice: assign() takes the node's slot at once, so the
   * jobs processed concurrently see it taken. Choosing in one tick and assigning after an
   * await let every concurrent job pick the same node, past its slots.
   */
  private async assignToNode(
    needs: JobNeeds, signal: AbortSignal, assignment: AssignJob,
  ): Promise<{ node: NodeSession; assigned: Promise<JobResult__Output> }> {
    const { registry } = this.options;
    for (;;) {
      signal.throwIfAborted();
      const choice = pickNode(registry.snapshots(), needs);
      const session = choice && registry.get(choice.id);
      if (session && !session.isClosed) {
        const assigned = session.assign(assignment);
        // Awaited by the caller; until then a session lost meanwhile is not an unhandled rejection.
        void assigned.catch(() => undefined);
        return { node: session, assigned };
      }
      await once(registry, 'capacity', { signal });
    }
  }
}


/** What a result that arrived outside its run changes in the job's record; undefined: nothing. */
function resultChange(node: NodeSession, result: JobResult__Output): Partial<JobRecord> | undefined {
  const base = { node: node.id, attempts: result.attempt, finishedAtMs: Date.now() };
  if (result.outcome !== 'error') {
    return {
      ...base, state: 'completed', runMs: result.runMs,
      ...(result.outputs ? { outputs: storeTensors(result.outputs.tensors) } : {}),
      ...(result.generated ? { generated: result.generated } : {}),
    };
  }
  // A retryable failure is the job's own run to retry; a deterministic one ends the job.
  if (!result.error || result.error.retryable) return undefined;
  return { ...base, state: 'failed', error: result.error };
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => { signal.removeEventListener('abort', onAbort); resolve(value); },
      (err: unknown) => { signal.removeEventListener('abort', onAbort); reject(err as Error); },
    );
  });
}
