// The lines a job leaves on its node (the fleet log store indexes them by `jobId`), over a
// backend that answers as the test says.
import { describe, expect, it } from 'vitest';
import { ConclaveError, captureLogger } from '@conclave/common';
import type { AssignJob__Output, NodeMessage } from '@conclave/protocol';
import type { InferenceBackend, RunResult } from './inference-backend.js';
import { JobRunner } from './job-runner.js';
import type { ModelFetcher } from './model-fetcher.js';
import type { Outbox } from './outbox.js';

const SHA = 'c'.repeat(64);

function assignment(jobId: string, attempt = 1): AssignJob__Output {
  return {
    jobId, attempt, kind: 'infer', timeoutMs: 0, generate: null, inputs: {},
    model: { name: 'affine', sha256: SHA, size: 1, inputs: [], outputs: [], artifacts: [], hailo: null },
  };
}

/** A runner whose backend's run is `run`; returns it with its log and what it sent. */
function runnerWith(run: (signal: AbortSignal | undefined) => Promise<RunResult>) {
  const { logger, jsonLines } = captureLogger('NODE');
  const sent: NodeMessage[] = [];
  const backend = {
    name: 'cpu', load: async () => undefined, run: (_sha: string, _inputs: unknown, options?: { signal?: AbortSignal }) => run(options?.signal),
    unload: async () => undefined, loadedModels: () => [], dispose: async () => undefined,
  } as InferenceBackend;
  const runner = new JobRunner({
    backend,
    fetcher: { ensure: async () => '/models/affine.onnx' } as unknown as ModelFetcher,
    outbox: { put: async () => undefined } as unknown as Outbox,
    send: (message) => sent.push(message) > 0,
    logger,
  });
  const lines = (jobId: string) =>
    jsonLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.jobId === jobId && l.level !== 'debug');
  return { runner, lines, sent };
}

describe('JobRunner lifecycle lines', () => {
  it('running, then completed with the run time, each with jobId and attempt', async () => {
    const { runner, lines } = runnerWith(async () => ({ outputs: {}, runMs: 2.5 }));
    await runner.run(assignment('j1', 2));
    expect(lines('j1')).toEqual([
      expect.objectContaining({ level: 'info', section: 'JOB', message: 'job running', attempt: 2, kind: 'infer', model: 'affine' }),
      expect.objectContaining({ level: 'info', section: 'JOB', message: 'job completed', attempt: 2, runMs: 2.5 }),
    ]);
  });

  it('failed with its code and the time it ran', async () => {
    const { runner, lines, sent } = runnerWith(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      throw new ConclaveError('NODE-JOB-813', { detail: 'bad model' });
    });
    await runner.run(assignment('j2'));
    const [running, failed] = lines('j2');
    expect(running).toMatchObject({ message: 'job running' });
    expect(failed).toMatchObject({ level: 'warn', section: 'JOB', message: 'job failed', code: 'NODE-JOB-813', attempt: 1 });
    expect(Number(failed?.runMs)).toBeGreaterThanOrEqual(15);
    expect(lines('j2')).toHaveLength(2);
    expect(sent[0]?.result?.error?.code).toBe('NODE-JOB-813');
  });

  it('cancelled by the orchestrator: one info line, not a warning', async () => {
    const { runner, lines } = runnerWith((signal) => new Promise((_, reject) => {
      signal?.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    }));
    const done = runner.run(assignment('j3'));
    await new Promise((resolve) => setImmediate(resolve));
    runner.cancel('j3', 1, 'cancelled by client');
    await done;
    expect(lines('j3').map((l) => `${String(l.level)} ${String(l.message)}`)).toEqual(['info job running', 'info job cancelled']);
  });
});
