// Needs the built packages (`pnpm build`): nodes run inference in worker threads from dist.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tensorFromTypedArray } from '@conclave/protocol';
import { affineModel, createTestControl, startRedis, startTestNode, startTestOrchestrator, tempDir, waitUntil } from '@conclave/testing';
import type { RedisServerHandle, TestControl } from '@conclave/testing';
import type { OrchestratorHandle } from './orchestrator.js';

describe('nodes drain and undrain', () => {
  let redis: RedisServerHandle;
  let orchestrator: OrchestratorHandle;
  let control: TestControl;
  const model = affineModel({ seed: 3 });
  const input = () => ({ x: tensorFromTypedArray('float32', [1, 4], model.sampleInputs(1).x!.data as Float32Array) });
  let a: Awaited<ReturnType<typeof startTestNode>>;
  let b: Awaited<ReturnType<typeof startTestNode>>;
  let aDir: Awaited<ReturnType<typeof tempDir>>;

  const stateOf = async (id: string) => (await control.listNodes()).find((n) => n.id === id);
  const runMany = async (count: number) => Promise.all(Array.from({ length: count }, () => control.run('affine', input())));

  beforeAll(async () => {
    redis = await startRedis();
    orchestrator = await startTestOrchestrator({ redisUrl: redis.url });
    control = createTestControl(orchestrator);
    aDir = await tempDir('conclave-drain-a-');
    a = await startTestNode({ orchestrator, name: 'a', dataDir: aDir.path });
    b = await startTestNode({ orchestrator, name: 'b' });
    await waitUntil(async () => (await control.listNodes()).filter((n) => n.state === 'connected').length === 2, { what: 'two nodes' });
    await control.addModel('affine', model.bytes);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await aDir?.remove();
    control?.close();
    await orchestrator?.close();
    await redis?.stop();
  });

  it('sends a drained node no new work, keeps it drained across a reconnect, and undrain gives it work again', async () => {
    // Both nodes take work before the drain.
    expect(new Set((await runMany(20)).map((j) => j.node))).toEqual(new Set([a.nodeId, b.nodeId]));

    const drained = await control.drainNode(a.nodeId);
    expect(drained).toMatchObject({ id: a.nodeId, draining: true, state: 'connected' });
    const jobs = await runMany(20);
    expect(jobs.every((j) => j.state === 'JOB_STATE_COMPLETED')).toBe(true);
    expect(new Set(jobs.map((j) => j.node))).toEqual(new Set([b.nodeId]));

    // The operator's word outlives the session: the node reconnects still drained.
    await a.close();
    await waitUntil(async () => (await stateOf(a.nodeId))?.state === 'disconnected', { what: 'a gone' });
    expect((await stateOf(a.nodeId))?.draining).toBe(true);
    a = await startTestNode({ orchestrator, name: 'a', dataDir: aDir.path });
    await waitUntil(async () => (await stateOf(a.nodeId))?.state === 'connected', { what: 'a back' });
    expect((await stateOf(a.nodeId))?.draining).toBe(true);
    expect(new Set((await runMany(20)).map((j) => j.node))).toEqual(new Set([b.nodeId]));

    const undrained = await control.undrainNode(a.nodeId);
    expect(undrained).toMatchObject({ draining: false });
    expect(new Set((await runMany(30)).map((j) => j.node))).toEqual(new Set([a.nodeId, b.nodeId]));
  });

  it('answers an id that never registered with NOT_FOUND ORCH-SCHED-852', async () => {
    await expect(control.drainNode('no-such-node')).rejects.toMatchObject({ code: 5, details: expect.stringContaining('ORCH-SCHED-852') });
  });

  it('reports every heartbeat field it keeps: memory in use and the clock offset', async () => {
    await waitUntil(async () => Number((await stateOf(b.nodeId))?.memoryUsedBytes ?? 0) > 0, { what: 'a heartbeat with memory' });
    const node = await stateOf(b.nodeId);
    expect(Math.abs(Number(node?.clockOffsetMs))).toBeLessThan(5_000);
  });
});
