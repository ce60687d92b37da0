// Needs the built packages (`pnpm build`): the engine and the nodes run worker threads from dist.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import type { NodeAgentHandle } from '@conclave/node-agent';
import { createTestControl, startRedis, startTestOrchestrator, tempDir, waitUntil } from '@conclave/testing';
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
});
