import { ConclaveError, isConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { jobErrorOf } from '@conclave/protocol';
import type { AssignJob__Output, JobError, JobResult, NodeMessage, WireTensor } from '@conclave/protocol';
import type { InferenceBackend } from './inference-backend.js';
import type { ModelFetcher } from './model-fetcher.js';
import type { Outbox } from './outbox.js';

export interface JobRunnerOptions {
  /** Runs `infer` jobs; absent on a node that runs no models, where they fail with NODE-JOB-803. */
  backend?: InferenceBackend;
  fetcher: ModelFetcher;
  outbox: Outbox;
  send: (message: NodeMessage) => boolean;
  logger: Logger;
  /** Runs a job of another kind (e.g. `generate` on a text-generation node). */
  extraKinds?: Record<string, (job: AssignJob__Output, signal: AbortSignal) => Promise<Pick<JobResult, 'generated'>>>;
}

/**
 * Runs the jobs the orchestrator assigns: fetch and verify the model if needed, load it,
 * run it on the backend (off the main thread), then send the result and keep it in the outbox
 * until the orchestrator acknowledges it, so that a dropped connection loses nothing.
 */
export class JobRunner {
  private readonly active = new Map<string, AbortController>();

  constructor(private readonly o: JobRunnerOptions) {}

  get running(): number {
    return this.active.size;
  }

  /** `job_id:attempt` of each job running now, in the order they started. */
  runningJobs(): string[] {
    return [...this.active.keys()];
  }

  async run(job: AssignJob__Output): Promise<void> {
    const key = `${job.jobId}:${job.attempt}`;
    if (this.active.has(key)) return;
    const controller = new AbortController();
    this.active.set(key, controller);
    const log = this.o.logger.child({ jobId: job.jobId, attempt: job.attempt });
    const queuedAt = performance.now();
    log.info('JOB', 'job running', { kind: job.kind || 'infer', ...(job.model?.name ? { model: job.model.name } : {}) });
    let result: JobResult;
    try {
      result = { jobId: job.jobId, attempt: job.attempt, ...(await this.execute(job, controller.signal)) };
      log.info('JOB', 'job completed', { runMs: roundMs(Number(result.runMs ?? 0)) });
    } catch (err) {
      const error = toJobError(err, controller.signal);
      // Wall time from the start: a failed run reports no time of its own.
      const runMs = roundMs(performance.now() - queuedAt);
      if (error.code === 'NODE-JOB-801') log.info('JOB', 'job cancelled', { runMs, err: error.message });
      else log.warn('JOB', 'job failed', { code: error.code, err, runMs });
      result = { jobId: job.jobId, attempt: job.attempt, error, queueMs: runMs };
    } finally {
      this.active.delete(key);
    }
    const sent = this.o.send({ result });
    await this.o.outbox.put(result, sent);
  }

  cancel(jobId: string, attempt: number, reason: string): void {
    this.active.get(`${jobId}:${attempt}`)?.abort(new ConclaveError('NODE-JOB-801', { detail: reason }));
  }

  cancelAll(reason: string): void {
    for (const controller of this.active.values()) controller.abort(new ConclaveError('NODE-JOB-801', { detail: reason }));
  }

  private async execute(job: AssignJob__Output, signal: AbortSignal): Promise<Omit<JobResult, 'jobId' | 'attempt'>> {
    const started = performance.now();
    if (job.kind && job.kind !== 'infer') {
      const handler = this.o.extraKinds?.[job.kind];
      if (!handler) throw new ConclaveError('NODE-JOB-803', { detail: job.kind });
      const out = await handler(job, signal);
      return { ...out, runMs: performance.now() - started };
    }
    const backend = this.o.backend;
    if (!backend) throw new ConclaveError('NODE-JOB-803', { detail: 'infer: this node has no inference backend' });
    const model = job.model;
    if (!model) throw new ConclaveError('NODE-JOB-802', { detail: 'assignment without a model' });
    const path = await this.o.fetcher.ensure(model);
    signal.throwIfAborted();
    await backend.load({
      sha256: model.sha256, path, inputs: model.inputs, outputs: model.outputs, artifacts: model.artifacts, hailo: model.hailo,
    });
    const { outputs, runMs } = await backend.run(model.sha256, job.inputs as Record<string, WireTensor>, {
      signal,
      ...(job.timeoutMs > 0 ? { timeoutMs: job.timeoutMs } : {}),
    });
    return { outputs: { tensors: outputs }, runMs, queueMs: performance.now() - started - runMs };
  }
}

function toJobError(err: unknown, signal: AbortSignal): JobError {
  const reason: unknown = signal.aborted ? signal.reason : err;
  const coded = isConclaveError(reason)
    ? reason
    : new ConclaveError('NODE-JOB-802', { detail: reason instanceof Error ? reason.message : String(reason), cause: reason });
  return jobErrorOf(coded);
}

/** Milliseconds to the hundredth, for log lines. */
function roundMs(ms: number): number {
  return Math.round(ms * 100) / 100;
}
