import { once } from 'node:events';
import type { EventEmitter } from 'node:events';
import { UnrecoverableError, Worker } from 'bullmq';
import type { Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { ConclaveError, isConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { jobErrorOf } from '@conclave/protocol';
import type { AssignJob, GenerateRequest, JobError, JobResult__Output, ModelRef } from '@conclave/protocol';
import type { JobStore } from './job-store.js';
import { loadTensors, storeTensors } from './job-store.js';
import type { StoredTensor } from './job-store.js';
import type { NodeRegistryEvents } from './node-registry.js';
import type { NodeSession } from './node-session.js';
import { BULL_PREFIX, JOB_QUEUE_NAME } from './redis-keys.js';
import { pickNode } from './scheduling/scheduler.js';
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
 */
export class Dispatcher {
  private readonly worker: Worker<JobData>;
  private readonly active = new Map<string, AbortController>();
  private readonly onFleetChange = () => this.resize();

  constructor(private readonly options: DispatcherOptions) {
    this.worker = new Worker<JobData>(JOB_QUEUE_NAME, (job) => this.process(job), {
      connection: options.redis,
      prefix: BULL_PREFIX,
      concurrency: 1,
      autorun: false,
      // Jobs wait for nodes inside the processor; keep BullMQ from treating that as a stall.
      lockDuration: 30_000,
      stalledInterval: 15_000,
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

  async close(): Promise<void> {
    this.options.registry.off('changed', this.onFleetChange);
    for (const controller of this.active.values()) controller.abort(new CancelledByClient('orchestrator shutting down'));
    await this.worker.close(true);
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

  private async process(job: BullJob<JobData>): Promise<void> {
    const { jobs, logger } = this.options;
    const id = job.id ?? '';
    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? 1;
    const log = logger.child({ jobId: id, attempt });
    // A job cancelled while queued was removed from the queue; one cancelled in the instant
    // between its pick-up and here still runs, and its result is refused by the record (a
    // job that has ended never changes), so no read is needed on every job's path.

    const controller = new AbortController();
    this.active.set(id, controller);
    const timer = setTimeout(() => controller.abort(new AttemptTimedOut()), job.data.timeoutMs);
    let node: NodeSession | undefined;
    try {
      const placed = await this.assignToNode(job.data.needs, controller.signal, {
        jobId: id, attempt, kind: job.data.kind, timeoutMs: job.data.timeoutMs,
        ...(job.data.model ? { model: job.data.model } : {}),
        ...(job.data.inputs ? { inputs: loadTensors(job.data.inputs) } : {}),
        ...(job.data.generate ? { generate: job.data.generate } : {}),
      });
      node = placed.node;
      // Recorded while the node works rather than before sending: one Redis round trip
      // less on every job's path. Awaited before the outcome is recorded, so it never lands last.
      const recorded = jobs.update(id, { state: 'running', node: node.id, attempts: attempt }).catch((err: unknown) => {
        log.warn('STATE', 'could not record the running state', { err });
      });
      log.debug('SCHED', 'job assigned', { node: node.id });
      const result = await abortable(placed.assigned, controller.signal).finally(() => recorded);
      await this.finish(job, result, attempt, maxAttempts, log);
    } catch (err) {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : err;
      if (node) node.abandon(id, attempt, reason instanceof Error ? reason.message : 'abandoned');
      if (reason instanceof UnrecoverableError) throw reason;
      await this.fail(job, reason, attempt, maxAttempts, log);
    } finally {
      clearTimeout(timer);
      // The freed slot reaches waiting jobs as the registry's capacity event, from the node's session.
      this.active.delete(id);
    }
  }

  private async finish(
    job: BullJob<JobData>, result: JobResult__Output, attempt: number, maxAttempts: number, log: Logger,
  ): Promise<void> {
    const id = job.id ?? '';
    if (result.outcome === 'error' && result.error) {
      throw new NodeReportedError(result.error);
    }
    await this.options.jobs.update(id, {
      state: 'completed', finishedAtMs: Date.now(), runMs: result.runMs,
      ...(result.outputs ? { outputs: storeTensors(result.outputs.tensors) } : {}),
      ...(result.generated ? { generated: result.generated } : {}),
    });
    log.debug('JOB', 'job completed', { runMs: result.runMs });
  }

  private async fail(job: BullJob<JobData>, reason: unknown, attempt: number, maxAttempts: number, log: Logger): Promise<never> {
    const id = job.id ?? '';
    const { jobs } = this.options;
    if (reason instanceof CancelledByClient) {
      await jobs.update(id, { state: 'cancelled', error: jobErrorOf(new ConclaveError('ORCH-JOB-803', { detail: reason.message })), finishedAtMs: Date.now() });
      throw new UnrecoverableError(reason.message);
    }
    if (reason instanceof AttemptTimedOut) {
      const error = new ConclaveError('ORCH-JOB-802', { detail: `after ${job.data.timeoutMs} ms` });
      log.failure(error, {}, 'warn');
      await jobs.update(id, { state: 'failed', error: jobErrorOf(error), finishedAtMs: Date.now() });
      throw new UnrecoverableError(error.message);
    }
    const error: JobError =
      reason instanceof NodeReportedError ? reason.error
      : isConclaveError(reason) ? jobErrorOf(reason)
      : jobErrorOf(new ConclaveError('ORCH-JOB-804', { detail: reason instanceof Error ? reason.message : String(reason) }));
    if (error.retryable && attempt < maxAttempts) {
      log.warn('JOB', 'attempt failed, will retry', { code: error.code, err: error.message });
      await jobs.update(id, { state: 'queued', error });
      throw reason instanceof Error ? reason : new Error(String(reason));
    }
    // A retryable failure on the last attempt becomes ORCH-JOB-804, which names the last cause.
    const final = error.retryable
      ? jobErrorOf(new ConclaveError('ORCH-JOB-804', { detail: `${attempt} attempts; last: ${error.code ?? ''} ${error.message ?? ''}` }))
      : error;
    log.warn('JOB', 'job failed', { code: final.code, err: final.message });
    await jobs.update(id, { state: 'failed', error: final, finishedAtMs: Date.now() });
    throw new UnrecoverableError(final.message ?? 'job failed');
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
