// An acknowledgement the outbox cannot act on is logged, never an unhandled rejection that would
// end the agent: a real orchestrator acks a result whose job id is no file name. Build first (`pnpm build`).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureLogger } from '@conclave/common';
import { startRedis, startTestNode, startTestOrchestrator, tempDir, waitUntil } from '@conclave/testing';

describe('a result acknowledgement the outbox cannot act on', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  it('for job id ../x is logged as NODE-STATE-709 and the agent stays connected', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(async () => process.off('unhandledRejection', onUnhandled));
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const orchestrator = await startTestOrchestrator({ redisUrl: redis.url, heartbeatIntervalMs: 250 });
    cleanups.push(() => orchestrator.close());
    const dir = await tempDir('conclave-result-ack-');
    cleanups.push(dir.remove);
    // A result an earlier run left whose job id is no file name: sent at connect, acked as unknown.
    await mkdir(join(dir.path, 'outbox'), { recursive: true, mode: 0o700 });
    await writeFile(join(dir.path, 'outbox', 'odd.1.json'), JSON.stringify({ jobId: '../x', attempt: 1 }), { mode: 0o600 });
    const { logger, lines } = captureLogger('NODE');
    const node = await startTestNode({ orchestrator, dataDir: dir.path, logger });
    cleanups.push(() => node.close());

    const logged = (): boolean => lines.some((l) => / WARN {2}NODE-STATE-709 outbox could not drop an acknowledged result .*jobId=\.\.\/x/.test(l));
    await waitUntil(() => logged() || unhandled.length > 0, { what: 'NODE-STATE-709 for ../x', timeoutMs: 15_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(unhandled).toEqual([]);
    expect(logged()).toBe(true);
    expect(node.connected).toBe(true);
  }, 30_000);
});
