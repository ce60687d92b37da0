// Needs the built packages (`pnpm build`): nodes run inference in worker threads from dist.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tensorFromTypedArray, typedArrayFromTensor } from '@conclave/protocol';
import type { WireTensor } from '@conclave/protocol';
import {
  addMulModel, affineModel, createTestControl, notOnnxBytes, startRedis, startTestNode, startTestOrchestrator, waitUntil,
} from '@conclave/testing';
import type { RedisServerHandle, TestControl } from '@conclave/testing';
import type { OrchestratorHandle } from './orchestrator.js';

function wire(t: { dtype: string; dims: readonly number[]; data: Parameters<typeof tensorFromTypedArray>[2] }): WireTensor {
  return tensorFromTypedArray(t.dtype as 'float32', t.dims, t.data);
}

describe('orchestrator with in-process nodes', () => {
  let redis: RedisServerHandle;
  let orchestrator: OrchestratorHandle;
  let control: TestControl;
  const nodes: Array<{ close(): Promise<void>; nodeId: string }> = [];
  const model = affineModel({ seed: 7 });

  beforeAll(async () => {
    redis = await startRedis();
    orchestrator = await startTestOrchestrator({ redisUrl: redis.url });
    control = createTestControl(orchestrator);
    for (let i = 0; i < 2; i++) nodes.push(await startTestNode({ orchestrator, name: `n${i}` }));
    await waitUntil(async () => (await control.listNodes()).filter((n) => n.state === 'connected').length === 2, { what: 'two nodes' });
    await control.addModel('affine', model.bytes);
  });

  afterAll(async () => {
    control?.close();
    for (const node of nodes) await node.close();
    await orchestrator?.close();
    await redis?.stop();
  });

  it('records the model signature read from the model itself', async () => {
    const [info] = await control.listModels();
    expect(info?.name).toBe('affine');
    expect(info?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(info?.inputs.map((i) => [i.name, i.dtype, i.dims])).toEqual([['x', 'float32', [-1, 4]]]);
    expect(info?.outputs.map((i) => [i.name, i.dtype, i.dims])).toEqual([['y', 'float32', [-1, 3]]]);
  });

  it('runs jobs on the nodes with exact outputs', async () => {
    const inputs = model.sampleInputs(3);
    const expected = model.expected(inputs);
    const jobs = await Promise.all(
      Array.from({ length: 20 }, () => control.run('affine', { x: wire(inputs.x!) })),
    );
    for (const job of jobs) {
      expect(job.state).toBe('JOB_STATE_COMPLETED');
      const y = job.outputs.y!;
      expect(y.dims).toEqual([3, 3]);
      expect([...typedArrayFromTensor(y)]).toEqual([...expected.y!.data]);
    }
    expect(new Set(jobs.map((j) => j.node)).size).toBe(2);
  });

  it('refuses an unknown model with NOT_FOUND listing the models', async () => {
    await expect(control.infer('nope', {})).rejects.toMatchObject({ code: 5, details: expect.stringMatching(/^ORCH-REQ-202 .*known models: affine/) });
  });

  it('refuses a wrong input name, dtype or shape with INVALID_ARGUMENT naming the signature', async () => {
    const good = wire(model.sampleInputs(1).x!);
    const cases: Array<Record<string, WireTensor>> = [
      { z: good },
      { x: tensorFromTypedArray('float64', [1, 4], new Float64Array(4)) },
      { x: tensorFromTypedArray('float32', [1, 5], new Float32Array(5)) },
      { x: { dtype: 'float32', dims: [1, 4], raw: Buffer.alloc(3) } },
    ];
    for (const inputs of cases) {
      await expect(control.infer('affine', inputs)).rejects.toMatchObject({
        code: 3, details: expect.stringMatching(/^ORCH-REQ-201 .*expected x: float32\[batch, 4\]/),
      });
    }
  });

  it('refuses a file that is not ONNX and records nothing, without naming the orchestrator\'s temporary file', async () => {
    const refused = control.addModel('garbage', notOnnxBytes());
    await expect(refused).rejects.toMatchObject({ code: 3, details: expect.stringMatching(/^ORCH-LOAD-101/) });
    const details = String(((await refused.catch((err: unknown) => err)) as { details?: string }).details);
    expect(details).not.toMatch(/\.upload-|\/tmp\//);
    expect((await control.listModels()).map((m) => m.name)).toEqual(['affine']);
  });

  it('reports job state and unknown jobs', async () => {
    await expect(control.get('no-such-job')).rejects.toMatchObject({ code: 5, details: expect.stringMatching(/^ORCH-JOB-801/) });
    const m = addMulModel();
    await control.addModel('addmul', m.bytes);
    const inputs = m.sampleInputs(4);
    const job = await control.run('addmul', { a: wire(inputs.a!), b: wire(inputs.b!) });
    const again = await control.get(job.id);
    expect(again.state).toBe('JOB_STATE_COMPLETED');
    expect([...typedArrayFromTensor(again.outputs.sum!)]).toEqual([...m.expected(inputs).sum!.data]);
  });

  it('fails a job at once, with a code, when the orchestrator has lost the model file (no retries)', async () => {
    const m = addMulModel({ length: 3 });
    const info = await control.addModel('orphan', m.bytes);
    await rm(join(orchestrator.dataDir, 'models', `${info.sha256}.onnx`));
    const inputs = m.sampleInputs();
    const job = await control.run('orphan', { a: wire(inputs.a!), b: wire(inputs.b!) });
    expect(job.state).toBe('JOB_STATE_FAILED');
    expect(job.error?.code).toBe('NODE-LOAD-151');
    expect(job.error?.message).toMatch(/ORCH-LOAD-103/);
    expect(job.attempts).toBe(1);
  });

  it('serves /healthz, /readyz and /metrics with jobs by state, job durations and connected nodes', async () => {
    const base = `http://127.0.0.1:${orchestrator.httpPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', failed: [] });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const completed = /conclave_jobs_finished_total\{kind="infer",state="completed"\} (\d+)/.exec(metrics);
    expect(Number(completed?.[1])).toBeGreaterThanOrEqual(21);
    expect(metrics).toMatch(/conclave_job_duration_seconds_bucket\{le="0\.1",kind="infer",state="completed"\} \d+/);
    expect(metrics).toMatch(/conclave_nodes_connected\{state="connected"\} 2/);
    expect(metrics).toMatch(/conclave_queue_jobs\{state="waiting"\} 0/);
    // Every job of this file so far, by state and model: 20 + 1 completed, 1 failed, none queued or running.
    expect(metrics.split('\n').filter((l) => l.startsWith('conclave_jobs{')).sort()).toEqual([
      'conclave_jobs{state="completed",model="addmul"} 1',
      'conclave_jobs{state="completed",model="affine"} 20',
      'conclave_jobs{state="failed",model="orphan"} 1',
    ]);
  });

  it('reports not ready, naming Redis, within a second or two of losing it', async () => {
    redis.kill();
    await redis.exited;
    const started = Date.now();
    const ready = await fetch(`http://127.0.0.1:${orchestrator.httpPort}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ failed: ['redis'] });
    expect(Date.now() - started).toBeLessThan(5_000);
    // Back on the same port, so the orchestrator and nodes can close as usual.
    redis = await startRedis({ port: redis.port });
    await waitUntil(async () => (await fetch(`http://127.0.0.1:${orchestrator.httpPort}/readyz`)).status === 200, { what: 'ready again' });
  });
});
