import { ConclaveError } from '@conclave/common';
import type { GenerateResult, Job, SubmitJobRequest__Output } from '@conclave/protocol';
import type { JobRecord, JobStore } from './job-store.js';
import { TERMINAL_STATES } from './job-store.js';

/** How long the orchestrator waits for one of its own jobs beyond the job's own timeout. */
const SETTLE_MARGIN_MS = 10_000;

/**
 * A generate job of the orchestrator's own (the chat assistant's), queued with the same checks
 * as an operator's, then waited for: resolves with its text, rejects with the job's coded error.
 */
export async function runGenerateJob(
  o: { submit: (request: SubmitJobRequest__Output) => Promise<Job>; jobs: JobStore; timeoutMs: number },
  prompt: string,
  maxTokens: number,
): Promise<GenerateResult> {
  const request: SubmitJobRequest__Output = {
    payload: 'generate', generate: { prompt, maxTokens, temperature: 0, seed: 0 }, infer: null,
    requirements: { accelerator: '', capability: 'text-generation', preferAccelerator: '' }, priority: 0, timeoutMs: o.timeoutMs, clientJobId: '',
  };
  // Listening before the submit: an update that comes before the submit returns is not missed.
  let finish: (record: JobRecord) => void = () => undefined;
  const done = new Promise<JobRecord>((resolve) => {
    finish = resolve;
  });
  let id = '';
  const onUpdate = (record: JobRecord) => {
    if (record.id === id && TERMINAL_STATES.has(record.state)) finish(record);
  };
  o.jobs.on('update', onUpdate);
  let timer: NodeJS.Timeout | undefined;
  try {
    const job = await o.submit(request);
    id = job.id ?? '';
    const current = await o.jobs.get(id);
    if (current && TERMINAL_STATES.has(current.state)) finish(current);
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ConclaveError('CHAT-RESP-302', { detail: `generate job ${id} did not settle in ${o.timeoutMs + SETTLE_MARGIN_MS} ms`, data: { jobId: id } })), o.timeoutMs + SETTLE_MARGIN_MS);
    });
    const record = await Promise.race([done, timedOut]);
    if (record.state !== 'completed' || !record.generated) {
      const code = record.error?.code ?? 'ORCH-JOB-802';
      throw new ConclaveError('CHAT-RESP-302', { detail: `${code} ${record.error?.message ?? record.state}`, data: { jobId: id } });
    }
    return record.generated;
  } finally {
    clearTimeout(timer);
    o.jobs.off('update', onUpdate);
  }
}
