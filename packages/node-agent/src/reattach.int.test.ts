// A node re-attaches within 10 s of its orchestrator coming back after a long outage: the link's
// backoff and gRPC's channel backoff are both capped (orchestrator-link.ts). Build first (`pnpm build`).
import { afterAll, describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import { startOrchestrator } from '@conclave/orchestrator';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import { startRedis, startTestNode, tempDir, waitUntil } from '@conclave/testing';

describe('re-attach after an orchestrator outage', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  it('is within 10 s of the orchestrator listening again, after 15 s down', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const dir = await tempDir('conclave-reattach-');
    cleanups.push(dir.remove);
    // The same data dir (the same key, which the node pinned) and port across the restart.
    const start = (grpcPort: number): Promise<OrchestratorHandle> =>
      startOrchestrator({ grpcHost: '127.0.0.1', grpcPort, httpPort: -1, dataDir: dir.path, redisUrl: redis.url, logger: nullLogger, heartbeatIntervalMs: 250 });
    let orchestrator = await start(0);
    const port = orchestrator.grpcPort;
    const node = await startTestNode({ orchestrator });
    cleanups.push(() => node.close());
    await waitUntil(() => node.connected, { what: 'the first session' });

    await orchestrator.close();
    await waitUntil(() => !node.connected, { what: 'the node to see it gone' });
    await new Promise((r) => setTimeout(r, 15_000));
    orchestrator = await start(port);
    cleanups.push(() => orchestrator.close());
    const back = Date.now();
    await waitUntil(() => node.connected, { what: 'the node to re-attach', timeoutMs: 15_000, intervalMs: 20 });
    expect(Date.now() - back).toBeLessThan(10_000);
  }, 60_000);
});
