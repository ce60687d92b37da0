import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { captureLogger } from '@conclave/common';
import type { LogBatch__Output, ShippedLogRecord__Output } from '@conclave/protocol';
import { startRedis, waitUntil } from '@conclave/testing';
import type { RedisServerHandle } from '@conclave/testing';
import type { StoredLogEntry } from './log-entry.js';
import { DEFAULT_LOG_LIMITS } from './log-limits.js';
import { LogMetrics } from './log-metrics.js';
import { LogStore, type NewLogEntry } from './log-store.js';
import { NodeLogIntake } from './node-log-intake.js';

function orchEntry(message: string, extra: Partial<NewLogEntry> = {}): NewLogEntry {
  return { timeMs: Date.now(), level: 'info', prefix: 'ORCH', section: 'JOB', message, fields: {}, ...extra };
}

function shipped(seq: number, message: string, extra: Partial<ShippedLogRecord__Output> = {}): ShippedLogRecord__Output {
  return { seq, timeMs: Date.now(), level: 'info', prefix: 'NODE', section: 'JOB', code: '', message, fieldsJson: '', ...extra };
}

function batch(records: ShippedLogRecord__Output[], gaps: LogBatch__Output['gaps'] = []): LogBatch__Output {
  return { records, gaps, spoolBytes: 1234, droppedTotal: 0 };
}

// One redis-server for the file, emptied before each test.
let server: RedisServerHandle;
let redis: Redis;
let store: LogStore;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.url, { enableAutoPipelining: true });
});
beforeEach(async () => {
  await redis.flushall();
  store = new LogStore(redis, DEFAULT_LOG_LIMITS);
});
afterAll(async () => {
  await redis?.quit();
  await server?.stop();
});

describe('the fleet log store on a real Redis', () => {
  it("reads one job's records from the orchestrator and two nodes, and one node's, without the others", async () => {
    await store.append([orchEntry('job queued', { jobId: 'j1' }), orchEntry('job queued', { jobId: 'j2' })]);
    await store.append([{ ...orchEntry('job running', { jobId: 'j1' }), prefix: 'NODE', node: 'n1', nodeName: 'alpha', seq: 1 }], { nodeId: 'n1', upToSeq: 1 });
    await store.append([{ ...orchEntry('job running', { jobId: 'j1' }), prefix: 'NODE', node: 'n2', nodeName: 'beta', seq: 1 }], { nodeId: 'n2', upToSeq: 1 });
    await store.append([{ ...orchEntry('other'), prefix: 'NODE', node: 'n2', seq: 2 }], { nodeId: 'n2', upToSeq: 2 });

    const job = await store.read({ jobId: 'j1' });
    expect(job.map((e) => [e.prefix, e.node ?? '-', e.message])).toEqual([
      ['ORCH', '-', 'job queued'], ['NODE', 'n1', 'job running'], ['NODE', 'n2', 'job running'],
    ]);
    expect((await store.read({ nodeId: 'n2' })).map((e) => e.message)).toEqual(['job running', 'other']);
    expect((await store.read({})).length).toBe(5);
    // The same ids in the index as in the fleet stream: a follower resumes with either.
    const all = await store.read({});
    expect(job.every((e) => all.some((a) => a.id === e.id))).toBe(true);
  });

  it('stores a resent node batch once (dedup by seq) and moves the stored seq', async () => {
    const entries = [1, 2, 3].map((seq) => ({ ...orchEntry(`m${seq}`), prefix: 'NODE' as const, node: 'n1', seq }));
    expect(await store.append(entries, { nodeId: 'n1', upToSeq: 3 })).toBe(3);
    expect(await store.append(entries, { nodeId: 'n1', upToSeq: 3 })).toBe(0);
    expect(await store.lastNodeSeq('n1')).toBe(3);
    expect((await store.read({ nodeId: 'n1' })).map((e) => e.message)).toEqual(['m1', 'm2', 'm3']);
  });

  it('filters by prefix, section and level, and never hides a gap record', async () => {
    await store.append([
      orchEntry('a', { level: 'debug' }), orchEntry('b', { level: 'warn', section: 'NET' }), orchEntry('c', { level: 'error', prefix: 'CHAT' }),
      orchEntry('lost', { level: 'warn', section: 'STATE', gap: true, fields: { count: 3 } }),
    ]);
    const messages = async (filter: Parameters<LogStore['read']>[0]) => (await store.read(filter)).map((e) => e.message);
    expect(await messages({ level: 'warn' })).toEqual(['b', 'c', 'lost']);
    expect(await messages({ prefixes: ['CHAT'] })).toEqual(['c', 'lost']);
    expect(await messages({ section: 'NET' })).toEqual(['b', 'lost']);
    expect(await messages({ limit: 2 })).toEqual(['c', 'lost']);
  });

  it('caps the fleet stream by length and shows the trim as a gap to a reader from before it', async () => {
    const small = new LogStore(redis, { ...DEFAULT_LOG_LIMITS, maxRecords: 100 });
    const first = await small.append([orchEntry('first')]);
    expect(first).toBe(1);
    const [firstEntry] = await small.read({});
    for (let i = 0; i < 30; i++) await small.append(Array.from({ length: 100 }, (_, j) => orchEntry(`m${i}-${j}`)));
    // MAXLEN ~ trims whole nodes: about the cap, never everything.
    const length = await redis.xlen('conclave:{logs}:all');
    expect(length).toBeGreaterThanOrEqual(100);
    expect(length).toBeLessThan(400);
    const resumed = await small.read({ afterId: firstEntry?.id ?? '0-0', limit: 5 });
    expect(resumed[0]).toMatchObject({ gap: true, code: 'ORCH-STATE-721', fields: { reason: 'trimmed' } });
    expect(resumed.slice(1).every((e) => !e.gap)).toBe(true);
  });

  it("keeps records once: a job's index holds references, and one whose record was trimmed reads as a gap", async () => {
    const small = new LogStore(redis, { ...DEFAULT_LOG_LIMITS, maxRecords: 100 });
    await small.append([orchEntry('early job line', { jobId: 'j-old' })]);
    for (let i = 0; i < 10; i++) await small.append(Array.from({ length: 100 }, (_, j) => orchEntry(`m${i}-${j}`)));
    await small.append([orchEntry('late job line', { jobId: 'j-old' })]);
    // The index entry is a bare reference, not a second copy of the record.
    const [ref] = await redis.xrange('conclave:{logs}:job:j-old', '-', '+', 'COUNT', 1);
    expect(ref?.[1]).toEqual(['r', '1']);
    const job = await small.read({ jobId: 'j-old' });
    expect(job.map((e) => (e.gap ? `${e.code}:${String(e.fields.count)}` : e.message))).toEqual(['ORCH-STATE-721:1', 'late job line']);
  });

  it("drains a job's follower: what was stored before the end is read, then it ends", async () => {
    const abort = new AbortController();
    const drain = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const entries of store.follow({ jobId: 'j-drain' }, abort.signal, { drain: drain.signal })) seen.push(...entries.map((e) => e.message));
    })();
    await store.append([orchEntry('queued', { jobId: 'j-drain' })]);
    await waitUntil(() => seen.length === 1, { timeoutMs: 5_000 });
    await store.append([orchEntry('completed', { jobId: 'j-drain' })]);
    // Ended right after the last line was stored: the follower still reads it.
    drain.abort();
    await following;
    expect(seen).toEqual(['queued', 'completed']);
  });

  it('trims by age on append', async () => {
    const aging = new LogStore(redis, { ...DEFAULT_LOG_LIMITS, maxAgeMs: 60_000 });
    // 250 records from an hour ago (ids are times), then one now.
    const hourAgo = Date.now() - 3_600_000;
    for (let i = 0; i < 250; i++) await redis.xadd('conclave:{logs}:all', `${hourAgo}-${i}`, 'e', JSON.stringify({ t: hourAgo, l: 'info', p: 'ORCH', s: 'JOB', m: 'old' }));
    await aging.append([orchEntry('new')]);
    const left = (await aging.read({ limit: 1_000 })).map((e) => e.message);
    // MINID ~ removes whole macro nodes (100 entries here): the old ones sharing a node with
    // the new one may stay until that node is all old.
    expect(left.filter((m) => m === 'old').length).toBeLessThan(100);
    expect(left).toContain('new');
  });

  it('follows: history, then new records as they come, a filter applied, until aborted', async () => {
    await store.append([orchEntry('before')]);
    const abort = new AbortController();
    const seen: StoredLogEntry[] = [];
    const following = (async () => {
      for await (const entries of store.follow({ prefixes: ['NODE'] }, abort.signal)) seen.push(...entries);
    })();
    await store.append([orchEntry('orch line')]);
    await store.append([{ ...orchEntry('node line'), prefix: 'NODE', node: 'n1', seq: 1 }], { nodeId: 'n1', upToSeq: 1 });
    await waitUntil(() => seen.length === 1, { timeoutMs: 5_000 });
    expect(seen.map((e) => e.message)).toEqual(['node line']);
    abort.abort();
    await following;
  });

  it('resumes a follow after an id with nothing twice and nothing skipped', async () => {
    await store.append(['a', 'b', 'c'].map((m) => orchEntry(m)));
    const [, b] = await store.read({});
    const abort = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const entries of store.follow({ afterId: b?.id ?? '' }, abort.signal)) seen.push(...entries.map((e) => e.message));
    })();
    await store.append([orchEntry('d')]);
    await waitUntil(() => seen.length === 2, { timeoutMs: 5_000 });
    expect(seen).toEqual(['c', 'd']);
    abort.abort();
    await following;
  });
});

describe("a node session's log intake", () => {
  function intake(extra: Partial<ConstructorParameters<typeof NodeLogIntake>[0]> = {}) {
    const acks: number[] = [];
    const captured = captureLogger('ORCH');
    const metrics = new LogMetrics();
    const i = new NodeLogIntake({ nodeId: 'n1', nodeName: 'alpha', store, logger: captured.logger, metrics, ack: (seq) => acks.push(seq), ...extra });
    return { intake: i, acks, captured, metrics };
  }

  it('stores records with the node, acks their last seq, and takes a resent batch once', async () => {
    const { intake: i, acks } = intake();
    const b = batch([shipped(1, 'one', { fieldsJson: JSON.stringify({ jobId: 'j9', attempt: 1 }) }), shipped(2, 'two')]);
    i.receive(b);
    i.receive(b);
    await i.idle();
    expect(acks).toEqual([2, 2]);
    const entries = await store.read({ nodeId: 'n1' });
    expect(entries.map((e) => [e.message, e.nodeName, e.jobId ?? '-'])).toEqual([['one', 'alpha', 'j9'], ['two', 'alpha', '-']]);
    expect(entries[0]?.fields).toEqual({ attempt: 1 });
    expect(i.figures()).toEqual({ spoolBytes: 1234, droppedTotal: 0 });
  });

  it("turns the node's declared gaps into gap records, skips 'skipped' ones, and shows an undeclared jump", async () => {
    const { intake: i, acks } = intake();
    i.receive(batch([shipped(1, 'one'), shipped(10, 'ten'), shipped(20, 'twenty')], [
      { fromSeq: 2, toSeq: 6, count: 5, reason: 'spool-full' },
      { fromSeq: 7, toSeq: 9, count: 0, reason: 'skipped' },
    ]));
    await i.idle();
    expect(acks).toEqual([20]);
    const entries = await store.read({ nodeId: 'n1' });
    expect(entries.map((e) => (e.gap ? `${e.code}:${String(e.fields.count)}:${String(e.fields.reason)}` : e.message))).toEqual([
      'one', 'ORCH-STATE-722:5:spool-full', 'ten', 'ORCH-STATE-723:9:missing', 'twenty',
    ]);
  });

  it('never stores a secret a node sent, nor an ORCH record from a node, and counts what it dropped', async () => {
    const { intake: i, captured, metrics } = intake();
    i.receive(batch([
      shipped(1, 'connecting to redis://:hunter2@db:6379', { fieldsJson: JSON.stringify({ token: 'hunter2', apiKey: 'k' }) }),
      shipped(2, 'forged', { prefix: 'ORCH' }),
      shipped(3, 'not json', { fieldsJson: '{' }),
    ]));
    await i.idle();
    const all = await store.read({ nodeId: 'n1' });
    const entries = all.filter((e) => !e.gap);
    expect(JSON.stringify(all)).not.toContain('hunter2');
    expect(entries.map((e) => e.message)).toEqual(['connecting to redis://:***@db:6379']);
    // The two it refused are counted in one gap record, not dropped silently.
    expect(all.filter((e) => e.gap)).toMatchObject([{ code: 'ORCH-REQ-265', fields: { count: 2, reason: 'malformed' } }]);
    expect(entries[0]?.fields).toEqual({ token: '[REDACTED]', apiKey: '[REDACTED]' });
    expect(captured.lines.filter((l) => l.includes('ORCH-REQ-265'))).toHaveLength(1);
    expect(await metrics.registry.getSingleMetricAsString('conclave_log_records_dropped_total')).toContain('reason="malformed"} 2');
  });

  it("holds a chatty node to its budget and says how much it dropped", async () => {
    let now = 1_000_000;
    const { intake: i, acks } = intake({ ratePerSecond: 10, now: () => now });
    i.receive(batch(Array.from({ length: 100 }, (_, k) => shipped(k + 1, `r${k + 1}`))));
    await i.idle();
    expect(acks).toEqual([100]);
    const entries = await store.read({ nodeId: 'n1' });
    // The burst is four seconds of the rate: 40 records, then one gap for the other 60.
    expect(entries.filter((e) => !e.gap)).toHaveLength(40);
    expect(entries.at(-1)).toMatchObject({ gap: true, code: 'ORCH-REQ-264', fields: { count: 60 } });
    now += 1_000;
    i.receive(batch([shipped(101, 'later')]));
    await i.idle();
    expect((await store.read({ nodeId: 'n1', limit: 1 }))[0]?.message).toBe('later');
  });

  it("takes a node whose sequence started over (its spool lost) as a restart, says so, and stores what it sends", async () => {
    const { intake: i, acks } = intake();
    i.receive(batch(Array.from({ length: 5 }, (_, k) => shipped(101 + k, `old life ${k}`))));
    await i.idle();
    const { intake: again } = intake();
    again.receive(batch([shipped(1, 'new life 1'), shipped(2, 'new life 2')]));
    await again.idle();
    const entries = await store.read({ nodeId: 'n1' });
    expect(entries.slice(-3).map((e) => (e.gap ? `${e.code}:${String(e.fields.reason)}` : e.message))).toEqual([
      'ORCH-STATE-723:restarted', 'new life 1', 'new life 2',
    ]);
    expect(await store.lastNodeSeq('n1')).toBe(2);
    expect(acks).toEqual([105]);
  });

  it('keeps at most one batch waiting while Redis is slow: resends replace it', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const appended: number[] = [];
    const slow = Object.assign(Object.create(store) as LogStore, {
      lastNodeSeq: () => Promise.resolve(0),
      append: async (entries: NewLogEntry[]) => {
        await gate;
        appended.push(entries.length);
        return entries.length;
      },
    });
    const { intake: i, acks } = intake({ store: slow });
    for (let k = 0; k < 50; k++) i.receive(batch([shipped(1, 'one')]));
    release();
    await i.idle();
    // The first, then the last of the 49 that came while it waited (a resend: nothing new in it): two stores, not fifty.
    expect(appended).toEqual([1, 0]);
    expect(acks).toEqual([1, 1]);
  });

  it('does not ack a batch Redis did not take, and stores it when it comes again', async () => {
    const { intake: i, acks } = intake();
    const failing = new LogStore(redis, DEFAULT_LOG_LIMITS);
    const broken = intake({ store: Object.assign(Object.create(failing) as LogStore, { append: () => Promise.reject(new Error('redis away')) }) });
    broken.intake.receive(batch([shipped(1, 'one')]));
    await broken.intake.idle();
    expect(broken.acks).toEqual([]);
    expect(broken.captured.lines.some((l) => l.includes('redis away'))).toBe(true);
    i.receive(batch([shipped(1, 'one')]));
    await i.idle();
    await waitUntil(() => acks.length === 1, { timeoutMs: 2_000 });
    expect((await store.read({ nodeId: 'n1' })).map((e) => e.message)).toEqual(['one']);
  });
});
