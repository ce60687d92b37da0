// Runs the built CLIs (`pnpm exec tsc -b packages/testing`): orchestrator and nodes are child processes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisServerHandle } from '@conclave/common';
import { createTestControl } from '../control.js';
import type { TestControl } from '../control.js';
import { spawnNodeAgent, spawnOrchestrator, tempDir } from '../fleet.js';
import { affineModel } from '../onnx/affine-model.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { affineInput, Cleanup, mismatch, wireInputs } from './e2e-support.js';

const JOBS = 200;

describe('a fleet of child processes', () => {
  const cleanup = new Cleanup();
  const model = affineModel({ seed: 11 });
  let redis: RedisServerHandle;
  let control: TestControl;
  const nodeIds: string[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    cleanup.add(() => redis.stop());
    const orchDir = await tempDir('conclave-e2e-orch-');
    cleanup.add(() => orchDir.remove());
    const orchestrator = await spawnOrchestrator({ redisUrl: redis.url, dataDir: orchDir.path });
    cleanup.add(() => orchestrator.stop());
    for (const name of ['alpha', 'beta']) {
      const dir = await tempDir('conclave-e2e-node-');
      cleanup.add(() => dir.remove());
      const node = await spawnNodeAgent({ orchestrator, dataDir: dir.path, name, slots: 2 });
      cleanup.add(() => node.stop());
      nodeIds.push(node.nodeId);
    }
    control = createTestControl(orchestrator);
    cleanup.add(() => control.close());
    await waitUntil(async () => (await control.listNodes()).filter((n) => n.state === 'connected').length === 2, {
      what: 'both nodes connected', timeoutMs: 20_000,
    });
    await control.addModel('affine', model.bytes);
  });

  afterAll(() => cleanup.run());

  it(`runs ${JOBS} jobs with exact outputs, spread over both nodes`, async () => {
    const inputs = Array.from({ length: JOBS }, (_, n) => affineInput(n, 1 + (n % 3)));
    const jobs = await Promise.all(inputs.map((x) => control.run('affine', wireInputs(x))));
    const wrong = jobs.map((job, n) => mismatch(job, model, inputs[n] ?? {})).filter((m) => m !== undefined);
    expect(wrong).toEqual([]);
    expect(new Set(jobs.map((j) => j.id)).size).toBe(JOBS);
    const perNode = new Map<string, number>();
    for (const job of jobs) perNode.set(job.node, (perNode.get(job.node) ?? 0) + 1);
    expect([...perNode.keys()].sort()).toEqual([...nodeIds].sort());
  });
});
