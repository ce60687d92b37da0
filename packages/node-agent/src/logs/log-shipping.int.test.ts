// The agent's wiring of log shipping: its logger's tap in, a real orchestrator's acknowledgements
// back, the figures on its own /metrics. Build first (`pnpm build`).
import { afterAll, describe, expect, it } from 'vitest';
import { LogTap, createLogger } from '@conclave/common';
import { startRedis, startTestNode, startTestOrchestrator, tempDir, waitUntil } from '@conclave/testing';

describe("a node agent's log shipping", () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  it('ships what its logger writes, and /metrics counts it', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const orchestrator = await startTestOrchestrator({ redisUrl: redis.url, heartbeatIntervalMs: 250 });
    cleanups.push(() => orchestrator.close());
    const dir = await tempDir('conclave-log-shipping-');
    cleanups.push(dir.remove);
    const tap = new LogTap('info');
    const logger = createLogger({ prefix: 'NODE', console: false, tap });
    cleanups.push(() => logger.close());
    const node = await startTestNode({ orchestrator, dataDir: dir.path, logger, logTap: tap, httpPort: 0, inference: false });
    cleanups.push(() => node.close());
    for (let i = 0; i < 5; i++) logger.info('REQ', 'marker', { i });

    const metrics = async () => (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
    const shipped = async () => Number(/^conclave_node_log_records_shipped_total (\d+)$/m.exec(await metrics())?.[1] ?? 0);
    // The five markers and the agent's own start-up lines (`node agent started`, `connected`).
    await waitUntil(async () => (await shipped()) >= 7, { what: 'records shipped', timeoutMs: 15_000 });
    const text = await metrics();
    expect(text).toMatch(/^conclave_node_log_records_dropped_total\{reason="spool-full"\} 0$/m);
    expect(text).toMatch(/^conclave_node_log_records_dropped_total\{reason="rate"\} 0$/m);
    expect(Number(/^conclave_node_log_spool_bytes (\d+)$/m.exec(text)?.[1])).toBeGreaterThan(0);
  }, 30_000);
});
