// Log shipping end to end in one process: a real orchestrator (its log store on a real Redis), a
// real node agent with its logger's tap and its spool on disk, real sealed sessions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogTap, createLogger, nullLogger } from '@conclave/common';
import type { ClosableLogger } from '@conclave/common';
import { startOrchestrator } from '@conclave/orchestrator';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import { createControlClient } from '@conclave/protocol';
import type { LogEntry__Output, LogQuery } from '@conclave/protocol';
import { startTestNode, tempDir } from '../fleet.js';
import { startRedis } from '../redis.js';
import type { RedisServerHandle } from '../index.js';
import { waitUntil } from '../wait-until.js';

/** What TailLogs answers for a query (no follow). */
function readLogs(orchestrator: OrchestratorHandle, query: LogQuery): Promise<LogEntry__Output[]> {
  const client = createControlClient(orchestrator.address, { operatorToken: orchestrator.operatorToken });
  return new Promise((resolve, reject) => {
    const entries: LogEntry__Output[] = [];
    const call = client.TailLogs({ limit: 10_000, ...query });
    call.on('data', (m: { entries: LogEntry__Output[] }) => entries.push(...m.entries));
    call.on('error', (err) => {
      client.close();
      reject(err);
    });
    call.on('end', () => {
      client.close();
      resolve(entries);
    });
  });
}

const fieldsOf = (e: LogEntry__Output): Record<string, unknown> => (e.fieldsJson ? (JSON.parse(e.fieldsJson) as Record<string, unknown>) : {});

describe('log shipping from a node agent to the fleet log store', () => {
  let redis: RedisServerHandle;
  let orchestratorDir: Awaited<ReturnType<typeof tempDir>>;
  let orchestrator: OrchestratorHandle;
  let port = 0;
  const startOrch = async () => {
    orchestrator = await startOrchestrator({
      grpcHost: '127.0.0.1', grpcPort: port, httpPort: -1, dataDir: orchestratorDir.path, logger: nullLogger, redisUrl: redis.url,
    });
    port = orchestrator.grpcPort;
  };

  beforeAll(async () => {
    redis = await startRedis();
    orchestratorDir = await tempDir('conclave-ship-orch-');
    await startOrch();
  });
  afterAll(async () => {
    await orchestrator?.close();
    await orchestratorDir?.remove();
    await redis?.stop();
  });

  async function node(dataDir: string, name: string, extra: { logSpoolMaxBytes?: number } = {}) {
    const tap = new LogTap('info');
    const logger: ClosableLogger = createLogger({ prefix: 'NODE', console: false, tap });
    const handle = await startTestNode({ orchestrator, dataDir, name, logger, logTap: tap, inference: false, ...extra });
    return { handle, logger };
  }

  it('ships what the agent logs, redacted, by node and name, and goes on with the next seq after a restart', async () => {
    const dir = await tempDir('conclave-ship-node-');
    const first = await node(dir.path, 'ship-a');
    first.logger.info('REQ', 'first life', { token: 'hunter2', n: 1 });
    await waitUntil(async () => (await readLogs(orchestrator, { node: 'ship-a' })).some((e) => e.message === 'first life'), { timeoutMs: 10_000 });
    await first.handle.close();
    const second = await node(dir.path, 'ship-a');
    second.logger.info('REQ', 'second life', { n: 3 });
    await waitUntil(async () => (await readLogs(orchestrator, { node: 'ship-a' })).some((e) => e.message === 'second life'), { timeoutMs: 10_000 });
    const entries = await readLogs(orchestrator, { node: 'ship-a' });
    const mine = entries.filter((e) => e.section === 'REQ');
    expect(mine.map((e) => e.message)).toEqual(['first life', 'second life']);
    expect(mine.every((e) => e.node === first.handle.nodeId && e.nodeName === 'ship-a' && e.prefix === 'NODE')).toBe(true);
    expect(fieldsOf(mine[0] as LogEntry__Output)).toEqual({ token: '[REDACTED]', n: 1 });
    // A reused seq would be taken for a resend and dropped: 'second life' is there, so none was.
    // The restart leaves no visible gap (an unused reserved block is skipped silently), no record twice.
    expect(entries.filter((e) => e.gap)).toEqual([]);
    expect(new Set(entries.map((e) => e.id)).size).toBe(entries.length);
    await second.handle.close();
    await dir.remove();
  });

  it('keeps records in its spool while the orchestrator is down and ships them in order when it is back', async () => {
    const dir = await tempDir('conclave-ship-node-');
    const n = await node(dir.path, 'ship-b');
    await waitUntil(() => n.handle.connected, { timeoutMs: 10_000 });
    await orchestrator.close();
    await waitUntil(() => !n.handle.connected, { timeoutMs: 10_000 });
    for (let i = 0; i < 50; i++) n.logger.info('REQ', 'while down', { i });
    await startOrch();
    await waitUntil(async () => (await readLogs(orchestrator, { node: 'ship-b', section: 'REQ' })).length === 50, { timeoutMs: 20_000 });
    const entries = await readLogs(orchestrator, { node: 'ship-b', section: 'REQ' });
    expect(entries.map((e) => fieldsOf(e).i)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await n.handle.close();
    await dir.remove();
  });

  it('shows a spool that overflowed during an outage as one gap record with its count, never silently', async () => {
    const dir = await tempDir('conclave-ship-node-');
    // The smallest spool: 64 KiB in four segments.
    const n = await node(dir.path, 'ship-c', { logSpoolMaxBytes: 64 * 1024 });
    await waitUntil(() => n.handle.connected, { timeoutMs: 10_000 });
    await orchestrator.close();
    await waitUntil(() => !n.handle.connected, { timeoutMs: 10_000 });
    // ~200 bytes a record, 1,500 records over 15 s (inside the node's rate budget): far more than 64 KiB.
    const padding = 'x'.repeat(120);
    for (let i = 0; i < 1_500; i++) {
      n.logger.info('REQ', 'offline record', { i, padding });
      if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 150));
    }
    await startOrch();
    await waitUntil(async () => (await readLogs(orchestrator, { node: 'ship-c' })).some((e) => e.section === 'REQ' && fieldsOf(e).i === 1_499), { timeoutMs: 30_000 });
    const entries = await readLogs(orchestrator, { node: 'ship-c' });
    const gaps = entries.filter((e) => e.gap);
    const kept = entries.filter((e) => e.section === 'REQ' && !e.gap).map((e) => Number(fieldsOf(e).i));
    expect(gaps.length).toBeGreaterThanOrEqual(1);
    expect(gaps.every((g) => g.code === 'ORCH-STATE-722' && fieldsOf(g).reason === 'spool-full')).toBe(true);
    const lost = gaps.reduce((sum, g) => sum + Number(fieldsOf(g).count), 0);
    // Every record is either stored or counted in a gap, and the newest survived.
    expect(kept.length + lost).toBeGreaterThanOrEqual(1_500);
    expect(kept.length).toBeLessThan(1_500);
    expect(kept.at(-1)).toBe(1_499);
    await n.handle.close();
    await dir.remove();
  }, 60_000);
});
