import { cp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOG_TAP_EARLY_LIMIT, LogTap, captureLogger, createLogger, type ClosableLogger } from '@conclave/common';
import type { LogBatch } from '@conclave/protocol';
import { tempDir, waitUntil } from '@conclave/testing';
import { registerLogShippingMetrics } from './log-metrics.js';
import { LogShipper } from './log-shipper.js';
import type { LogBatchLink, LogShipperOptions } from './log-shipper-options.js';
import type { ShippedRecord } from './shipped-record.js';
import type { ShippedGap } from './spool-entry.js';

const NODE = 'node-1';

interface SentBatch {
  records: ShippedRecord[];
  gaps: ShippedGap[];
  spoolBytes: number;
  droppedTotal: number;
}

/** The session: up or down, and every batch that went out, as sent (a copy: the shipper reuses its object). */
class FakeLink implements LogBatchLink {
  up = false;
  readonly batches: SentBatch[] = [];
  /** Acknowledges each batch as the orchestrator would once stored. */
  autoAck: ((upToSeq: number) => void) | undefined;

  send(batch: LogBatch): boolean {
    if (!this.up) return false;
    const sent = structuredClone(batch) as SentBatch;
    this.batches.push(sent);
    const ack = this.autoAck;
    if (ack) setImmediate(() => ack(lastSeqOf(sent)));
    return true;
  }
}

const lastSeqOf = (b: SentBatch): number => Math.max(0, ...b.records.map((r) => r.seq), ...b.gaps.map((g) => g.toSeq));
const seqs = (b: SentBatch | undefined): number[] => (b?.records ?? []).map((r) => r.seq);

/** What an orchestrator would have after these batches: each seq once, records and gaps. */
function received(link: FakeLink): { records: Map<number, ShippedRecord>; gaps: ShippedGap[] } {
  const records = new Map<number, ShippedRecord>();
  const gaps = new Map<string, ShippedGap>();
  for (const batch of link.batches) {
    for (const r of batch.records) records.set(r.seq, r);
    for (const g of batch.gaps) gaps.set(`${g.fromSeq}-${g.toSeq}`, g);
  }
  return { records, gaps: [...gaps.values()] };
}

interface Harness {
  shipper: LogShipper;
  logger: ClosableLogger;
  link: FakeLink;
  own: ReturnType<typeof captureLogger>;
  connect(): void;
  disconnect(): void;
  ack(upToSeq: number): void;
}

describe('LogShipper', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const open: Harness[] = [];

  beforeEach(async () => {
    dir = await tempDir('conclave-log-shipper-');
  });
  afterEach(async () => {
    for (const h of open.splice(0)) {
      await h.shipper.close();
      await h.logger.close();
    }
    await dir.remove();
  });

  async function start(over: Partial<LogShipperOptions> & { tap?: LogTap; spoolDir?: string } = {}): Promise<Harness> {
    const { tap = new LogTap('debug'), spoolDir = dir.path, ...options } = over;
    const logger = createLogger({ prefix: 'NODE', level: 'debug', console: false, bindings: { node: NODE }, tap });
    // The shipper's own warnings go elsewhere: the tests count exactly what they logged.
    const own = captureLogger('NODE');
    const link = new FakeLink();
    const shipper = await LogShipper.open({ dir: spoolDir, tap, nodeId: NODE, link, logger: own.logger, ...options });
    const h: Harness = {
      shipper, logger, link, own,
      connect() {
        link.up = true;
        shipper.connected();
      },
      disconnect() {
        link.up = false;
        shipper.disconnected();
      },
      ack(upToSeq) {
        shipper.ack({ upToSeq });
      },
    };
    open.push(h);
    return h;
  }

  const logN = (h: Harness, n: number, message = 'job completed') => {
    for (let i = 0; i < n; i++) h.logger.info('JOB', message, { jobId: `j-${i}` });
  };
  const spoolGrew = async (h: Harness, from: number) => waitUntil(() => h.shipper.stats().spoolBytes > from, { what: 'records in the spool', timeoutMs: 5_000 });

  it('sends one batch at a time: the next only after the acknowledgement', async () => {
    const h = await start();
    h.connect();
    logN(h, 3);
    await waitUntil(() => h.link.batches.length === 1, { what: 'the first batch' });
    expect(seqs(h.link.batches[0])).toEqual([1, 2, 3]);
    expect(h.link.batches[0]!.records[0]).toMatchObject({ level: 'info', prefix: 'NODE', section: 'JOB', message: 'job completed', fieldsJson: '{"jobId":"j-0"}' });
    // Two flushes to the spool later (each is followed by an attempt to send), still one batch out.
    const before = h.shipper.stats().spoolBytes;
    logN(h, 2);
    await spoolGrew(h, before);
    const middle = h.shipper.stats().spoolBytes;
    logN(h, 1);
    await spoolGrew(h, middle);
    expect(h.link.batches.length).toBe(1);
    h.ack(3);
    await waitUntil(() => h.link.batches.length === 2, { what: 'the second batch' });
    expect(seqs(h.link.batches[1])).toEqual([4, 5, 6]);
    expect(h.link.batches[1]!.spoolBytes).toBe(h.shipper.stats().spoolBytes);

    const registry = new Registry();
    registerLogShippingMetrics(registry, () => h.shipper.stats());
    expect(await registry.metrics()).toMatch(/conclave_node_log_records_shipped_total 3\n/);
    h.ack(6);
    await waitUntil(async () => /conclave_node_log_records_shipped_total 6\n/.test(await registry.metrics()), { what: 'shipped_total 6' });
    expect(await registry.metrics()).toMatch(/conclave_node_log_records_dropped_total\{reason="rate"\} 0\n/);
    expect(await registry.metrics()).toMatch(/conclave_node_log_spool_bytes [1-9]\d*\n/);
  });

  it('sends the unacknowledged batch again after a reconnect', async () => {
    const h = await start({ ackTimeoutMs: 60_000 });
    h.connect();
    logN(h, 2);
    await waitUntil(() => h.link.batches.length === 1, { what: 'the first batch' });
    h.disconnect();
    logN(h, 1);
    h.connect();
    await waitUntil(() => h.link.batches.length === 2, { what: 'the batch again' });
    expect(seqs(h.link.batches[1])).toEqual([1, 2]);
    h.ack(2);
    await waitUntil(() => h.link.batches.length === 3, { what: 'the record logged offline' });
    expect(seqs(h.link.batches[2])).toEqual([3]);
  });

  it('sends the batch again when no acknowledgement comes in time', async () => {
    const h = await start({ ackTimeoutMs: 200 });
    h.connect();
    logN(h, 2);
    await waitUntil(() => h.link.batches.length === 2, { what: 'the batch sent twice' });
    expect(seqs(h.link.batches[1])).toEqual(seqs(h.link.batches[0]));
  });

  it('acknowledgements free the spool segments below them', async () => {
    const segments = async () => (await readdir(dir.path)).filter((n) => n.endsWith('.jsonl'));
    const h = await start({ segmentMaxBytes: 4_096 });
    logN(h, 100, 'x'.repeat(150));
    await waitUntil(async () => (await segments()).length >= 5, { what: 'segments written' });
    h.link.autoAck = (upTo) => h.ack(upTo);
    h.connect();
    await waitUntil(() => h.shipper.stats().shippedTotal === 100, { what: 'every record shipped' });
    await waitUntil(async () => (await segments()).length === 1, { what: 'acknowledged segments removed' });
    expect(h.shipper.stats().spoolBytes).toBeLessThanOrEqual(4_096);
  });

  it('a full spool drops its oldest segment: the next batch says so in a gap with the count, and a warning is logged', async () => {
    const h = await start({ spoolMaxBytes: 16_384, segmentMaxBytes: 4_096 });
    const total = 300;
    logN(h, total, 'y'.repeat(150));
    await waitUntil(() => h.shipper.stats().droppedTotal['spool-full'] > 0, { what: 'a drop' });
    h.link.autoAck = (upTo) => h.ack(upTo);
    h.connect();
    await waitUntil(() => h.link.batches.some((b) => b.records.some((r) => r.seq === total)), { what: 'the last record' });
    const { records, gaps } = received(h.link);
    const spoolFull = gaps.filter((g) => g.reason === 'spool-full');
    expect(spoolFull.length).toBeGreaterThan(0);
    // Every seq is a record or inside a gap, and the gaps count exactly what is missing.
    const lost = spoolFull.reduce((sum, g) => sum + g.count, 0);
    expect(records.size + lost).toBe(total);
    for (let seq = 1; seq <= total; seq++) {
      expect(records.has(seq) || spoolFull.some((g) => g.fromSeq <= seq && seq <= g.toSeq)).toBe(true);
    }
    expect(spoolFull[0]!.fromSeq).toBe(1);
    expect(h.shipper.stats().droppedTotal['spool-full']).toBe(lost);
    expect(h.link.batches[0]!.droppedTotal).toBe(lost);
    for (const batch of h.link.batches) expect(batch.spoolBytes).toBeLessThanOrEqual(16_384);
    expect(h.own.lines.some((l) => / WARN {2}NODE-STATE-720 log spool full: the oldest unshipped log records were dropped .*count=\d+/.test(l))).toBe(true);
  });

  it('a drop while a batch is in flight leaves that batch whole and gaps only what was never sent', async () => {
    const h = await start({ spoolMaxBytes: 16_384, segmentMaxBytes: 4_096, ackTimeoutMs: 60_000 });
    h.connect();
    logN(h, 10, 'z'.repeat(150));
    await waitUntil(() => h.link.batches.length === 1, { what: 'the first batch' });
    logN(h, 290, 'z'.repeat(150));
    await waitUntil(() => h.shipper.stats().droppedTotal['spool-full'] > 0, { what: 'a drop' });
    h.link.autoAck = (upTo) => h.ack(upTo);
    h.ack(10);
    await waitUntil(() => h.link.batches.some((b) => b.records.some((r) => r.seq === 300)), { what: 'the last record' });
    const { records, gaps } = received(h.link);
    expect(seqs(h.link.batches[0])).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(gaps).toHaveLength(1);
    expect(gaps[0]).toMatchObject({ fromSeq: 11, reason: 'spool-full' });
    expect(gaps[0]!.count).toBe(gaps[0]!.toSeq - 10);
    expect(records.size + gaps[0]!.count).toBe(300);
    expect(records.has(gaps[0]!.toSeq + 1)).toBe(true);
  });

  it('goes on with the next seq after a clean restart, sending nothing twice', async () => {
    const a = await start();
    a.link.autoAck = (upTo) => a.ack(upTo);
    a.connect();
    logN(a, 3);
    await waitUntil(() => a.shipper.stats().shippedTotal === 3, { what: 'three shipped' });
    await a.shipper.close();
    const b = await start();
    b.connect();
    logN(b, 1);
    await waitUntil(() => b.link.batches.length === 1, { what: 'a batch after the restart' });
    expect(b.link.batches[0]).toMatchObject({ gaps: [] });
    expect(seqs(b.link.batches[0])).toEqual([4]);
  });

  it('after a crash sends again what was not acknowledged, then goes on after the last seq on disk', async () => {
    const a = await start();
    logN(a, 3);
    await spoolGrew(a, 0);
    // The spool as the crash left it: copied while the shipper runs, nothing written at close.
    const crashed = await tempDir('conclave-log-shipper-crashed-');
    await cp(dir.path, crashed.path, { recursive: true });
    const b = await start({ spoolDir: crashed.path });
    b.link.autoAck = (upTo) => b.ack(upTo);
    b.connect();
    await waitUntil(() => b.link.batches.length === 1, { what: 'the batch from the spool' });
    expect(seqs(b.link.batches[0])).toEqual([1, 2, 3]);
    logN(b, 1);
    await waitUntil(() => b.link.batches.length === 2, { what: 'a new record' });
    expect(seqs(b.link.batches[1])).toEqual([4]);
    await b.shipper.close();
    await crashed.remove();
  });

  it('without its spool, starts above the reserved seqs and says the unused ones were skipped', async () => {
    const a = await start();
    logN(a, 3);
    await spoolGrew(a, 0);
    await a.shipper.close();
    for (const name of await readdir(dir.path)) if (name.endsWith('.jsonl')) await rm(join(dir.path, name));
    const b = await start();
    b.connect();
    logN(b, 1);
    await waitUntil(() => b.link.batches.length === 1, { what: 'a batch after the restart' });
    expect(b.link.batches[0]!.gaps).toEqual([{ fromSeq: 4, toSeq: 10_000, count: 0, reason: 'skipped' }]);
    expect(seqs(b.link.batches[0])).toEqual([10_001]);
  });

  it('counts records over the rate budget and says them as one gap taking one seq, once the budget allows', async () => {
    let now = 0;
    const h = await start({ rateRecordsPerSecond: 10, rateBurstRecords: 3, nowMs: () => now });
    h.connect();
    logN(h, 5);
    await waitUntil(() => h.link.batches.length === 1, { what: 'the first batch' });
    expect(seqs(h.link.batches[0])).toEqual([1, 2, 3]);
    expect(h.shipper.stats().droppedTotal.rate).toBe(2);
    h.ack(3);
    now += 1_000;
    await waitUntil(() => h.link.batches.length === 2, { what: 'the rate gap' });
    expect(h.link.batches[1]).toMatchObject({ records: [], gaps: [{ fromSeq: 4, toSeq: 4, count: 2, reason: 'rate' }], droppedTotal: 2 });
    h.ack(4);
    logN(h, 1);
    await waitUntil(() => h.link.batches.length === 3, { what: 'the next record' });
    expect(seqs(h.link.batches[2])).toEqual([5]);
  });

  it('ships what the tap kept before it started, then a gap for what the tap had to drop', async () => {
    const tap = new LogTap('info');
    const early = createLogger({ prefix: 'NODE', console: false, bindings: { node: NODE }, tap });
    for (let i = 0; i < LOG_TAP_EARLY_LIMIT + 5; i++) early.info('STATE', 'starting', { i });
    const h = await start({ tap });
    h.link.autoAck = (upTo) => h.ack(upTo);
    h.connect();
    await waitUntil(() => received(h.link).gaps.length === 1, { what: 'the early gap' });
    const { records, gaps } = received(h.link);
    expect(records.size).toBe(LOG_TAP_EARLY_LIMIT);
    expect(records.get(1)?.fieldsJson).toBe('{"i":0}');
    expect(gaps).toEqual([{ fromSeq: LOG_TAP_EARLY_LIMIT + 1, toSeq: LOG_TAP_EARLY_LIMIT + 1, count: 5, reason: 'spool-full' }]);
    for (const batch of h.link.batches) expect(batch.records.length).toBeLessThanOrEqual(512);
    await early.close();
  });

  it('a shipped record never carries a secret: the logger redacted it', async () => {
    const h = await start();
    h.connect();
    h.logger.info('AUTH', 'x', { token: 's3cret', nested: { password: 'hunter2' }, url: 'redis://:pw123@host:6379' });
    await waitUntil(() => h.link.batches.length === 1, { what: 'the batch' });
    const { fieldsJson } = h.link.batches[0]!.records[0]!;
    expect(JSON.parse(fieldsJson)).toEqual({ token: '[REDACTED]', nested: { password: '[REDACTED]' }, url: 'redis://:***@host:6379' });
    expect(JSON.stringify(h.link.batches)).not.toMatch(/s3cret|hunter2|pw123/);
  });
});
