import type { Redis } from 'ioredis';
import { ConclaveError, levelPasses, type LogLevel, type LogPrefix, type Section } from '@conclave/common';
import { LuaScript } from '../lua-script.js';
import { redisKeys } from '../redis-keys.js';
import type { LogFilter, LogReader, StoredLogEntry } from './log-entry.js';
import { DEFAULT_FOLLOW_HISTORY, DEFAULT_HISTORY, DEFAULT_LOG_LIMITS, MAX_HISTORY, type LogLimits } from './log-limits.js';
import { APPEND_LOGS_SCRIPT } from './log-store-scripts.js';

/**
 * The most entries one read examines for a filter that matches few of them (a section in the
 * fleet stream): a read stays bounded whatever the filter; a job's or node's own stream is used
 * when the filter names one, so those reads examine only their records.
 */
export const MAX_SCANNED_PER_READ = 100_000;
/** Entries per Redis call while reading or following. */
const PAGE = 1_000;
/** The longest one blocking read waits; an abort cuts it short (the connection is closed). */
const FOLLOW_BLOCK_MS = 5_000;
/** Followers at once: each holds a Redis connection for its blocking reads. */
export const MAX_LOG_FOLLOWERS = 64;

export interface FollowOptions {
  /**
   * Once aborted, the follower stops waiting: it reads what is stored up to now without blocking,
   * yields it, and ends (a job's follower, after the job ended: its last lines are not cut off).
   */
  drain?: AbortSignal;
}

/** An entry before it is stored: the store gives it its id. */
export type NewLogEntry = Omit<StoredLogEntry, 'id'> & {
  /** The node's seq for a shipped record: stored at most once. */
  seq?: number;
};

/** What one stored entry holds in its stream: short keys, as every record is kept up to three times. */
interface StoredShape {
  t: number;
  l: LogLevel;
  p: LogPrefix;
  s: Section;
  c?: string;
  m: string;
  n?: string;
  nn?: string;
  j?: string;
  f?: Record<string, unknown>;
  g?: 1;
}

/**
 * The fleet log store: the orchestrator's own records and every node's, in capped Redis streams
 * (a fleet stream, and one stream per node and per job with the same entry ids, so one job's or
 * node's records are read without scanning the fleet's).
 */
export class LogStore implements LogReader {
  private readonly append_: LuaScript;
  private followers = 0;

  constructor(private readonly redis: Redis, readonly limits: Omit<LogLimits, 'nodeRatePerSecond'> = DEFAULT_LOG_LIMITS, private readonly now: () => number = Date.now) {
    this.append_ = new LuaScript(redis, APPEND_LOGS_SCRIPT, 0);
  }

  /**
   * Stores entries in one step; a node's batch also moves the node's stored seq to `upToSeq`, and
   * entries at or below the stored seq are skipped (a batch sent again). `restartFrom` first sets
   * the stored seq back (the node's sequence started over). Returns how many were stored.
   */
  async append(entries: readonly NewLogEntry[], node?: { nodeId: string; upToSeq: number; restartFrom?: number }): Promise<number> {
    if (entries.length === 0 && !node) return 0;
    const keys = [redisKeys.logs()];
    const keyIndex = new Map<string, number>();
    const indexOf = (key: string): number => {
      let index = keyIndex.get(key);
      if (index === undefined) {
        keys.push(key);
        index = keys.length;
        keyIndex.set(key, index);
      }
      return index;
    };
    const perEntry: Array<string | number> = [];
    for (const entry of entries) {
      perEntry.push(
        JSON.stringify(toStoredShape(entry)),
        entry.seq ?? 0,
        entry.node ? indexOf(redisKeys.nodeLogs(entry.node)) : 0,
        entry.jobId ? indexOf(redisKeys.jobLogs(entry.jobId)) : 0,
      );
    }
    const seqKey = node ? indexOf(redisKeys.nodeLogSeq(node.nodeId)) : 0;
    const cutoffMs = Math.max(0, this.now() - this.limits.maxAgeMs);
    const ids = await this.append_.runWithKeys(keys, [
      this.limits.maxRecords, this.limits.nodeMaxRecords, this.limits.jobMaxRecords, cutoffMs,
      Math.ceil(this.limits.maxAgeMs / 1000), Math.ceil(Math.min(this.limits.maxAgeMs, this.limits.jobMaxAgeMs) / 1000),
      seqKey, node?.upToSeq ?? 0, node?.restartFrom !== undefined ? 1 : 0, node?.restartFrom ?? 0, entries.length, ...perEntry,
    ]);
    return ids.filter((id) => id !== '').length;
  }

  /** The last seq stored for a node's shipped records (0 before the first). */
  async lastNodeSeq(nodeId: string): Promise<number> {
    return Number((await this.redis.get(redisKeys.nodeLogSeq(nodeId))) ?? 0);
  }

  /** True when any record of the job is stored. */
  async hasJob(jobId: string): Promise<boolean> {
    return (await this.redis.exists(redisKeys.jobLogs(jobId))) === 1;
  }

  async read(filter: LogFilter): Promise<StoredLogEntry[]> {
    return this.history(filter, filter.limit ?? DEFAULT_HISTORY);
  }

  async *follow(filter: LogFilter, signal: AbortSignal, options: FollowOptions = {}): AsyncIterable<StoredLogEntry[]> {
    if (this.followers >= MAX_LOG_FOLLOWERS) {
      throw new ConclaveError('ORCH-REQ-263', { detail: `${MAX_LOG_FOLLOWERS} followers already`, data: { max: MAX_LOG_FOLLOWERS } });
    }
    this.followers++;
    // Blocking reads hold their connection: each follower has its own, closed to cut a read short.
    const connection = this.redis.duplicate({ maxRetriesPerRequest: null, enableOfflineQueue: true });
    const { drain } = options;
    const stop = () => connection.disconnect();
    signal.addEventListener('abort', stop, { once: true });
    drain?.addEventListener('abort', stop, { once: true });
    try {
      const key = streamFor(filter);
      // Where the history ends, known before it is read: nothing stored meanwhile is missed.
      const top = await this.topId(key);
      const history = await this.history({ ...filter }, filter.limit ?? DEFAULT_FOLLOW_HISTORY, top);
      if (history.length > 0) yield history;
      // From where the history stopped: a forward read may stop at its limit before `top` (the
      // rest comes through the blocking reads), the newest-N read always ends at `top`.
      const forward = filter.afterId !== undefined || filter.sinceMs !== undefined;
      let last = forward ? (history.at(-1)?.id ?? filter.afterId ?? `${Math.max(0, (filter.sinceMs ?? 0) - 1)}-${Number.MAX_SAFE_INTEGER}`) : top;
      while (!signal.aborted && !drain?.aborted) {
        let reply: Array<[string, Array<[string, string[]]>]> | null;
        try {
          reply = (await connection.xread('COUNT', PAGE, 'BLOCK', FOLLOW_BLOCK_MS, 'STREAMS', key, last)) as typeof reply;
        } catch (err) {
          if (signal.aborted || drain?.aborted) break;
          throw err;
        }
        const raw = reply?.[0]?.[1] ?? [];
        if (raw.length === 0) continue;
        const batch = await this.pageOf(key, raw, filter, last);
        last = raw.at(-1)?.[0] ?? last;
        if (batch.length > 0) yield batch;
      }
      if (signal.aborted || !drain?.aborted) return;
      // Drained: what was stored up to now, read without blocking, then the end.
      for (;;) {
        const raw = await this.redis.xrange(key, `(${last}`, '+', 'COUNT', PAGE);
        if (raw.length === 0) return;
        const batch = await this.pageOf(key, raw, filter, last);
        last = raw.at(-1)?.[0] ?? last;
        if (batch.length > 0) yield batch;
        if (raw.length < PAGE) return;
      }
    } finally {
      this.followers--;
      signal.removeEventListener('abort', stop);
      drain?.removeEventListener('abort', stop);
      connection.disconnect();
    }
  }

  /** One page a follower read, as entries that match; a full page may have fallen past a trim. */
  private async pageOf(key: string, raw: Array<[string, string[]]>, filter: LogFilter, after: string): Promise<StoredLogEntry[]> {
    const batch: StoredLogEntry[] = [];
    if (raw.length === PAGE) {
      const gap = await this.trimGap(key, after);
      if (gap) batch.push(gap);
    }
    for (const entry of await this.entriesOf(raw)) if (matches(entry, filter)) batch.push(entry);
    return batch;
  }

  /**
   * Stream entries as log entries: the fleet stream's hold the record, an index's only name it,
   * and are read from the fleet stream. References whose record was trimmed read as one gap.
   */
  private async entriesOf(raw: ReadonlyArray<[string, string[]]>): Promise<StoredLogEntry[]> {
    const refs = raw.filter(([, fields]) => fields[0] === 'r').map(([id]) => id);
    const resolved = new Map<string, string[]>();
    if (refs.length > 0) {
      const pipeline = this.redis.pipeline();
      for (const id of refs) pipeline.xrange(redisKeys.logs(), id, id);
      const replies = (await pipeline.exec()) ?? [];
      replies.forEach(([err, reply], i) => {
        const found = !err && Array.isArray(reply) ? (reply[0] as [string, string[]] | undefined) : undefined;
        if (found) resolved.set(refs[i] as string, found[1]);
      });
    }
    const out: StoredLogEntry[] = [];
    let trimmed = 0;
    let firstTrimmed = '';
    const flushTrimmed = () => {
      if (trimmed === 0) return;
      out.push(trimGapEntry(firstTrimmed, { reason: 'trimmed', count: trimmed }));
      trimmed = 0;
    };
    for (const [id, fields] of raw) {
      const recordFields = fields[0] === 'r' ? resolved.get(id) : fields;
      const entry = recordFields ? parseEntry(id, recordFields) : undefined;
      if (entry) {
        flushTrimmed();
        out.push(entry);
      } else if (fields[0] === 'r') {
        if (trimmed === 0) firstTrimmed = id;
        trimmed++;
      }
    }
    flushTrimmed();
    return out;
  }

  /**
   * The history a filter asks for, oldest first: from `afterId` or `sinceMs` forward (the first
   * `limit`), else the newest `limit`. Ends at `until` when given. A gap entry comes first when
   * the asked-for start lies before what the store still holds.
   */
  private async history(filter: LogFilter, limit: number, until = '+'): Promise<StoredLogEntry[]> {
    const key = streamFor(filter);
    const wanted = Math.min(limit, MAX_HISTORY);
    if (wanted <= 0) return [];
    const forward = filter.afterId !== undefined || filter.sinceMs !== undefined;
    const out: StoredLogEntry[] = [];
    let scanned = 0;
    if (forward) {
      const start = filter.afterId !== undefined ? `(${filter.afterId}` : `${filter.sinceMs ?? 0}-0`;
      const gap = await this.trimGap(key, filter.afterId ?? `${filter.sinceMs ?? 0}-0`);
      if (gap) out.push(gap);
      let from = start;
      while (out.length < wanted && scanned < MAX_SCANNED_PER_READ) {
        const page = await this.redis.xrange(key, from, until, 'COUNT', PAGE);
        scanned += page.length;
        for (const entry of await this.entriesOf(page)) {
          if (matches(entry, filter)) out.push(entry);
          if (out.length >= wanted) break;
        }
        if (page.length < PAGE) break;
        from = `(${page.at(-1)?.[0] ?? ''}`;
      }
      return out;
    }
    let to = until;
    while (out.length < wanted && scanned < MAX_SCANNED_PER_READ) {
      const page = await this.redis.xrevrange(key, to, '-', 'COUNT', PAGE);
      scanned += page.length;
      for (const entry of await this.entriesOf(page)) {
        if (matches(entry, filter)) out.push(entry);
        if (out.length >= wanted) break;
      }
      if (page.length < PAGE) break;
      to = `(${page.at(-1)?.[0] ?? ''}`;
    }
    return out.reverse();
  }

  /** The newest id in a stream, `0-0` when it has none. */
  private async topId(key: string): Promise<string> {
    const newest = await this.redis.xrevrange(key, '+', '-', 'COUNT', 1);
    return newest[0]?.[0] ?? '0-0';
  }

  /**
   * A gap entry when records after `afterId` were trimmed: the stream's oldest entry is newer
   * than `afterId` and the stream once held more than it holds now.
   */
  private async trimGap(key: string, afterId: string): Promise<StoredLogEntry | undefined> {
    let info: unknown[];
    try {
      info = (await this.redis.xinfo('STREAM', key)) as unknown[];
    } catch {
      return undefined; // no such stream yet: nothing was trimmed
    }
    const field = (name: string): unknown => info[info.indexOf(name) + 1];
    const length = Number(field('length'));
    const added = Number(field('entries-added'));
    const first = field('first-entry') as [string, string[]] | null;
    if (!first || !(added > length) || compareIds(first[0], afterId) <= 0) return undefined;
    return trimGapEntry(previousId(first[0]), { reason: 'trimmed', after: afterId, oldestKept: first[0] });
  }
}

/** ORCH-STATE-721 where records the reader asked for were trimmed; its time is that of the id. */
function trimGapEntry(id: string, fields: Record<string, unknown>): StoredLogEntry {
  const error = new ConclaveError('ORCH-STATE-721');
  return {
    id, timeMs: Number(id.split('-')[0]), level: 'warn', prefix: 'ORCH', section: 'STATE', code: error.code,
    message: error.entry.message, fields, gap: true,
  };
}

/** The stream a filter reads: a job's, a node's, or the fleet's. */
function streamFor(filter: LogFilter): string {
  if (filter.jobId !== undefined) return redisKeys.jobLogs(filter.jobId);
  if (filter.nodeId !== undefined) return redisKeys.nodeLogs(filter.nodeId);
  return redisKeys.logs();
}

export function matches(entry: StoredLogEntry, filter: LogFilter): boolean {
  // Gap records always pass the level, prefix and section filters: a gap must never be hidden.
  if (!entry.gap) {
    if (filter.prefixes && filter.prefixes.length > 0 && !filter.prefixes.includes(entry.prefix)) return false;
    if (filter.section !== undefined && entry.section !== filter.section) return false;
    if (filter.level !== undefined && !levelPasses(entry.level, filter.level)) return false;
  }
  // A node's or a job's reads come from its own stream, so a gap read there is its own.
  if (!entry.gap && filter.nodeId !== undefined && entry.node !== filter.nodeId) return false;
  if (!entry.gap && filter.jobId !== undefined && entry.jobId !== filter.jobId) return false;
  if (filter.sinceMs !== undefined && filter.afterId === undefined && entry.timeMs < filter.sinceMs) return false;
  return true;
}

function toStoredShape(entry: NewLogEntry): StoredShape {
  const shape: StoredShape = { t: entry.timeMs, l: entry.level, p: entry.prefix, s: entry.section, m: entry.message };
  if (entry.code !== undefined) shape.c = entry.code;
  if (entry.node !== undefined) shape.n = entry.node;
  if (entry.nodeName !== undefined) shape.nn = entry.nodeName;
  if (entry.jobId !== undefined) shape.j = entry.jobId;
  if (Object.keys(entry.fields).length > 0) shape.f = entry.fields;
  if (entry.gap) shape.g = 1;
  return shape;
}

function parseEntry(id: string, fields: string[]): StoredLogEntry | undefined {
  const json = fields[fields.indexOf('e') + 1];
  if (json === undefined) return undefined;
  let shape: StoredShape;
  try {
    shape = JSON.parse(json) as StoredShape;
  } catch {
    return undefined;
  }
  const entry: StoredLogEntry = {
    id, timeMs: shape.t, level: shape.l, prefix: shape.p, section: shape.s, message: shape.m, fields: shape.f ?? {},
  };
  if (shape.c !== undefined) entry.code = shape.c;
  if (shape.n !== undefined) entry.node = shape.n;
  if (shape.nn !== undefined) entry.nodeName = shape.nn;
  if (shape.j !== undefined) entry.jobId = shape.j;
  if (shape.g) entry.gap = true;
  return entry;
}

/** Orders stream ids (`<ms>-<seq>`) numerically. */
export function compareIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am !== bm ? am - bm : as - bs;
}

/** The id just before `id`: a gap entry sorts before the first record kept. */
function previousId(id: string): string {
  const [ms = 0, seq = 0] = id.split('-').map(Number);
  return seq > 0 ? `${ms}-${seq - 1}` : `${Math.max(0, ms - 1)}-${Number.MAX_SAFE_INTEGER}`;
}
