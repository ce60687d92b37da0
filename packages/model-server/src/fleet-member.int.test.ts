// Needs the built packages (`pnpm build`): the engine and the nodes run worker threads from dist.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import type { NodeAgentHandle } from '@conclave/node-agent';
import { tensorFromTypedArray } from '@conclave/protocol';
import { affineModel, createTestControl, startRedis, startTestNode, startTestOrchestrator, tempDir, waitUntil } from '@conclave/testing';
import type { RedisServerHandle, TestControl } from '@conclave/testing';
import { joinFleet } from './fleet-member.js';
import { startModelServer } from './model-server.js';
import type { ModelServerHandle } from './model-server.js';

describe('the model server in the fleet', () => {
  let redis: RedisServerHandle;
  let orchestrator: Awaited<ReturnType<typeof startTestOrchestrator>>;
  let server: ModelServerHandle;
  let member: NodeAgentHandle;
  let control: TestControl;
  let dir: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    redis = await startRedis();
    orchestrator = await startTestOrchestrator({ redisUrl: redis.url });
    server = await startModelServer({ port: 0, logger: nullLogger });
    await server.ready;
    dir = await tempDir();
    member = await joinFleet({
      server, orchestrator: orchestrator.address, join: await orchestrator.createJoinString(), dataDir: dir.path, slots: 2, logger: nullLogger,
    });
    control = createTestControl(orchestrator);
    await waitUntil(async () => (await control.listNodes()).some((n) => n.features.includes('text-generation')), { what: 'text node' });
  });

  afterAll(async () => {
    control?.close();
    await member?.close();
    await server?.close();
    await orchestrator?.close();
    await redis?.stop();
    await dir?.remove();
  });

  it('serves `generate` jobs submitted to the orchestrator, with the same text as the server itself', async () => {
    const job = await control.submit({ generate: { prompt: 'the fleet', maxTokens: 8 } });
    const done = await control.wait(job.id);
    expect(done.state).toBe('JOB_STATE_COMPLETED');
    expect(done.node).toBe(member.nodeId);
    const direct = await server.generate({ prompt: 'the fleet', maxTokens: 8 });
    expect(done.generated?.text).toBe(direct.text);
    expect(done.generated?.completionTokens).toBe(direct.usage.completion_tokens);
  });

  it('refuses a generate job without a prompt', async () => {
    await expect(control.submit({ generate: { prompt: '' } })).rejects.toMatchObject({ code: 3 });
  });

  it('advertises only text generation: no inference backend, no models loaded', async () => {
    const listed = (await control.listNodes()).find((n) => n.id === member.nodeId);
    expect(listed).toMatchObject({ backends: [], backendActive: '', loadedModels: [], features: ['text-generation'] });
  });

  it('never gets an ONNX job: with only the model server in the fleet it waits, and a node agent that joins runs it', async () => {
    const model = affineModel({ seed: 5 });
    await control.addModel('affine-fleet-member', model.bytes);
    const job = await control.infer('affine-fleet-member', { x: tensorFromTypedArray('float32', [1, 4], Float32Array.from([1, 2, 3, 4])) });
    // Placement is tried at once and on every heartbeat; by now the model server would have had it.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await control.get(job.id)).toMatchObject({ state: 'JOB_STATE_QUEUED', node: '', attempts: 0 });

    const agent = await startTestNode({ orchestrator, slots: 1 });
    try {
      const done = await control.wait(job.id);
      expect(done).toMatchObject({ state: 'JOB_STATE_COMPLETED', node: agent.nodeId, attempts: 1 });
    } finally {
      await agent.close();
    }
  });
});
