import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type { GenerateResult, Job, JobError, Tensor, WireTensor } from '@conclave/protocol';
import { redisKeys } from './redis-keys.js';

export type JobStateName = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export const JOB_STATES: readonly JobStateName[] = ['queued', 'running', 'completed', 'failed', 'cancelled'];

export const TERMINAL_STATES: ReadonlySet<JobStateName> = new Set(['completed', 'failed', 'cancelled']);

/** Tensors as stored in Redis and in BullMQ job data: JSON with base64 bytes. */
export type StoredTensor = { dtype: string; dims: number[]; raw: string };

/** What a job asked of its node; empty strings mean "any". */
export interface JobRequirements {
  accelerator: string;
  capability: string;
  /** Absent in records written before preferences existed. */
  preferAccelerator?: string;
  /** The chips the job's model has a HEF for, so that Job.waiting can say none fits; not on the wire. */
  hefChips?: string[];
}

export interface JobRecord {
  id: string;
  state: JobStateName;
  kind: string;
  model: string;
  node: string;
  attempts: number;
  createdAtMs: number;
  finishedAtMs: number;
  runMs: number;
  /** When the latest attempt went to its node; absent while it never did. */
  startedAtMs?: number;
  requirements?: JobRequirements;
  error?: JobError;
  outputs?: Record<string, StoredTensor>;
  generated?: GenerateResult;
}

/** Jobs a list page holds when the caller names no limit, and at most. */
export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 500;

/**
 * Ended jobs the index keeps, at most: beyond it, those whose records expire first leave it
 * (the records stay readable by id until their TTL). Queued and running jobs are always kept:
 * there are at most maxQueuedJobs of them, plus the fleet's slots.
 */
export const DEFAULT_MAX_ENDED_INDEXED = 100_000;

/**
 * Index entries one list call reads at most: a page of a filter that matches few jobs may come
 * back short (with a token to go on from), never slow.
 */
const MAX_SCANNED_PER_PAGE = 5_000;

/**
 * Expired entries every index write drops on the way. Each job is written at least twice
 * (queued, ended) and expires once, so the writes keep up with any rate.
 */
const SWEEP_PER_WRITE = 16;
/** Expired entries one explicit sweep (a scrape) drops per script call. */
const SWEEP_BATCH = 1_000;

/** The most often the index is checked against the records of its queued and running jobs. */
const RECONCILE_INTERVAL_MS = 60_000;

/** Fields `list` reads: the record without its outputs and generated text. */
const SUMMARY_FIELDS = [
  'id', 'state', 'kind', 'model', 'node', 'attempts', 'createdAtMs', 'finishedAtMs', 'runMs', 'startedAtMs', 'requirements', 'error',
] as const;

export function storeTensors(tensors: Record<string, WireTensor | Tensor>): Record<string, StoredTensor> {
  return Object.fromEntries(
    Object.entries(tensors).map(([name, t]) => [
      name,
      { dtype: t.dtype ?? '', dims: (t.dims ?? []).map(Number), raw: Buffer.from(t.raw ?? Buffer.alloc(0)).toString('base64') },
    ]),
  );
}

export function loadTensors(stored: Record<string, StoredTensor>): Record<string, WireTensor> {
  return Object.fromEntries(
    Object.entries(stored).map(([name, t]) => [name, { dtype: t.dtype, dims: t.dims, raw: Buffer.from(t.raw, 'base64') }]),
  );
}

/**
 * Applies a change to a job record unless the job already ended, in one step, so that a
 * cancel and the dispatcher's own update cannot both pass the terminal check.
 *   KEYS[1]  the job hash
 *   ARGV[1]  TTL in seconds, applied when the change ends the job
 *   ARGV[2…] field, value, field, value…
 * Returns: {} when the job does not exist; otherwise {applied (1 or 0), field, value, …}
 * with the record as it is after the call.
 */
const UPDATE_JOB_SCRIPT = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {} end
local function terminal(s) return s == 'completed' or s == 'failed' or s == 'cancelled' end
local applied = 0
if not terminal(state) then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
  applied = 1
  if terminal(redis.call('HGET', KEYS[1], 'state')) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
end
local hash = redis.call('HGETALL', KEYS[1])
table.insert(hash, 1, applied)
return hash
`;

/**
 * What both index scripts share. Their keys, all in the `{jobs}` slot:
 *   KEYS[1]  the index (every job, by createdAtMs)      KEYS[2]  the active jobs (by createdAtMs)
 *   KEYS[3]  the ended jobs (by expiry, ms)             KEYS[4]  job id → "<state>|<model>"
 *   KEYS[5]  "<state>|<model>" → count
 * The counts are the sum of KEYS[4], kept in the same step as it.
 */
const INDEX_FUNCTIONS = `
local function ended(s) return s == 'completed' or s == 'failed' or s == 'cancelled' end
local function uncount(entry)
  if redis.call('HINCRBY', KEYS[5], entry, -1) <= 0 then redis.call('HDEL', KEYS[5], entry) end
end
local function forget(id)
  local entry = redis.call('HGET', KEYS[4], id)
  if entry then
    uncount(entry)
    redis.call('HDEL', KEYS[4], id)
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
local function sweep(now, limit)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do forget(id) end
  return #expired
end
`;

/**
 * Records a job's state in the index (an upsert), after dropping a few entries whose record
 * expired. KEYS as in INDEX_FUNCTIONS.
 *   ARGV[1]  job id   ARGV[2]  createdAtMs   ARGV[3]  its state, or '' when its record is gone
 *   ARGV[4]  model    ARGV[5]  when its record expires (ms; ended states)
 *   ARGV[6]  most ended jobs kept (those expiring first go beyond it)   ARGV[7]  now (ms)
 * Returns: 1 when the index changed; 0 when it had the job in that state already, or ended
 * (as the record, the index never moves an ended job).
 */
const INDEX_JOB_SCRIPT = `${INDEX_FUNCTIONS}
sweep(ARGV[7], ${SWEEP_PER_WRITE})
local id, state = ARGV[1], ARGV[3]
if state == '' then
  forget(id)
  return 1
end
local entry = state .. '|' .. ARGV[4]
local previous = redis.call('HGET', KEYS[4], id)
if previous then
  if previous == entry or ended(string.match(previous, '^[^|]*')) then return 0 end
  uncount(previous)
end
redis.call('HSET', KEYS[4], id, entry)
redis.call('HINCRBY', KEYS[5], entry, 1)
redis.call('ZADD', KEYS[1], ARGV[2], id)
if ended(state) then
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[3], ARGV[5], id)
  local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[6])
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', KEYS[3], 0, over - 1)) do forget(old) end
  end
else
  redis.call('ZADD', KEYS[2], ARGV[2], id)
end
return 1
`;

/**
 * Drops the index entries of ended jobs whose record expired. KEYS as in INDEX_FUNCTIONS.
 *   ARGV[1]  now (ms)   ARGV[2]  most entries to drop
 * Returns: how many were dropped.
 */
const SWEEP_JOB_INDEX_SCRIPT = `${INDEX_FUNCTIONS}
return sweep(ARGV[1], tonumber(ARGV[2]))
`;

type RedisWithJobScripts = Redis & {
  conclaveUpdateJob(key: string, ttlSeconds: string, ...fields: string[]): Promise<Array<number | string>>;
  conclaveIndexJob(...keysAndArgs: string[]): Promise<number>;
  conclaveSweepJobIndex(...keysAndArgs: string[]): Promise<number>;
};

const INDEX_KEYS = (): string[] => [
  redisKeys.jobIndex(), redisKeys.activeJobs(), redisKeys.endedJobs(), redisKeys.jobIndexStates(), redisKeys.jobCounts(),
];

export interface JobStoreEvents {
  update: [JobRecord];
}

export interface JobStoreOptions {
  /** Ended jobs the index keeps at most. @default DEFAULT_MAX_ENDED_INDEXED (100,000) */
  maxEndedIndexed?: number;
  /** Where a failed index write is reported (the next reconcile repairs it). @default none */
  logger?: Logger;
}

/** What `list` takes; every filter is optional. */
export interface JobListQuery {
  state?: JobStateName;
  model?: string;
  /** Jobs whose record names one of these node ids (the node that runs or ran the latest attempt). */
  nodes?: ReadonlySet<string>;
  /** Page size. @default DEFAULT_LIST_LIMIT (50); at most MAX_LIST_LIMIT (500) */
  limit?: number;
  /** The previous page's `nextPageToken`. */
  pageToken?: string;
}

export interface JobListPage {
  /** Newest first; records without `outputs` and `generated` (`get` has them). */
  jobs: JobRecord[];
  /** Empty on the last page. A page may be short, even empty, and still have one: go on with it. */
  nextPageToken: string;
}

/** How many indexed jobs are in one state with one model (`''` for jobs without one: generate). */
export interface JobCount {
  state: JobStateName;
  model: string;
  count: number;
}

/** A position in an index: the last entry a page consumed. */
interface IndexCursor {
  score: number;
  id: string;
}

/**
 * Job records and results in Redis. A record expires `resultTtlSeconds` after the job ends;
 * until then GetJob and WatchJob read it. Updates are also published in process for watchers.
 *
 * Beside the records, an index in the `{jobs}` slot: every job by creation time (for `list`), the
 * queued and running ones, the ended ones by expiry (so that entries leave with their record),
 * and counts by state and model (for /metrics). It is written right after each record change,
 * never in the same script (the records are spread over the cluster), so a crash in between can
 * leave it behind: `list` repairs what it reads, and `counts` rechecks the queued and running
 * jobs against their records now and then.
 */
export class JobStore extends EventEmitter<JobStoreEvents> {
  private readonly redis: RedisWithJobScripts;
  private readonly maxEndedIndexed: number;
  private reconciledAtMs = 0;

  constructor(
    redis: Redis,
    private readonly resultTtlSeconds: number,
    private readonly options: JobStoreOptions = {},
  ) {
    super();
    this.setMaxListeners(0);
    this.maxEndedIndexed = options.maxEndedIndexed ?? DEFAULT_MAX_ENDED_INDEXED;
    if (!('conclaveUpdateJob' in redis)) redis.defineCommand('conclaveUpdateJob', { numberOfKeys: 1, lua: UPDATE_JOB_SCRIPT });
    if (!('conclaveIndexJob' in redis)) redis.defineCommand('conclaveIndexJob', { numberOfKeys: 5, lua: INDEX_JOB_SCRIPT });
    if (!('conclaveSweepJobIndex' in redis)) redis.defineCommand('conclaveSweepJobIndex', { numberOfKeys: 5, lua: SWEEP_JOB_INDEX_SCRIPT });
    this.redis = redis as RedisWithJobScripts;
  }

  async create(record: JobRecord): Promise<void> {
    // Sent together: one round trip, the record first (one connection runs its commands in order).
    await Promise.all([this.redis.hset(redisKeys.job(record.id), serialize(record)), this.index(record)]);
    this.emit('update', record);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const hash = await this.redis.hgetall(redisKeys.job(id));
    return hash.id ? deserialize(hash) : undefined;
  }

  /** Where a job stands, without its outputs: what a job interrupted by a restart needs to know. */
  async peek(id: string): Promise<Pick<JobRecord, 'state' | 'node' | 'attempts'> | undefined> {
    const [state, node, attempts] = await this.redis.hmget(redisKeys.job(id), 'state', 'node', 'attempts');
    if (!state) return undefined;
    return { state: state as JobStateName, node: node ?? '', attempts: Number(attempts ?? 0) };
  }

  /** Applies a change; a terminal state starts the record's TTL. Never moves a terminal job. */
  async update(id: string, change: Partial<JobRecord>): Promise<JobRecord | undefined> {
    return (await this.tryUpdate(id, change)).record;
  }

  /** As `update`, and says whether the change was applied (false: the job had ended, or is unknown). */
  async tryUpdate(id: string, change: Partial<JobRecord>): Promise<{ applied: boolean; record: JobRecord | undefined }> {
    const fields = Object.entries(serializePartial(change)).flat();
    if (fields.length === 0) return { applied: false, record: await this.get(id) };
    const reply = await this.redis.conclaveUpdateJob(redisKeys.job(id), String(this.resultTtlSeconds), ...fields);
    if (reply.length === 0) return { applied: false, record: undefined };
    const [applied, ...flat] = reply;
    const hash: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) hash[String(flat[i])] = String(flat[i + 1]);
    const record = deserialize(hash);
    if (applied === 1) {
      // Not awaited: no round trip more on a job's path. It is sent now, so anything this
      // connection sends later (a list, the next update) runs after it.
      // A lost index write is repaired by reconcileIndex (the record is the truth).
      this.index(record).catch((cause: unknown) => this.options.logger?.failure(
        new ConclaveError('ORCH-STATE-712', { data: { jobId: id, state: record.state }, cause }), {}, 'warn',
      ));
      this.emit('update', record);
    }
    return { applied: applied === 1, record };
  }

  /**
   * A page of jobs, newest first, that match every filter given. Queued and running jobs are
   * read from their own index; the other states are found among all jobs, at most
   * MAX_SCANNED_PER_PAGE entries a call. Index entries whose record is gone are dropped on the way.
   */
  async list(query: JobListQuery = {}): Promise<JobListPage> {
    const limit = Math.min(MAX_LIST_LIMIT, Math.max(1, query.limit || DEFAULT_LIST_LIMIT));
    const key = query.state === 'queued' || query.state === 'running' ? redisKeys.activeJobs() : redisKeys.jobIndex();
    const batchSize = Math.min(MAX_LIST_LIMIT, Math.max(100, limit));
    let cursor = query.pageToken ? decodePageToken(query.pageToken) : undefined;
    const jobs: JobRecord[] = [];
    const stale: string[] = [];
    let scanned = 0;
    let atEnd = false;
    try {
      while (jobs.length < limit && scanned < MAX_SCANNED_PER_PAGE && !atEnd) {
        const { entries, exhausted } = await this.entriesAfter(key, cursor, batchSize);
        atEnd = exhausted;
        const records = await this.summaries(entries.map((e) => e.id));
        let taken = 0;
        for (const [i, entry] of entries.entries()) {
          cursor = entry;
          scanned += 1;
          taken += 1;
          const record = records[i];
          if (!record) stale.push(entry.id);
          else if (matches(record, query)) jobs.push(record);
          if (jobs.length === limit) break;
        }
        // A page that filled before the end of its batch leaves entries for the next page.
        if (taken < entries.length) atEnd = false;
      }
    } finally {
      // Repairs only: a list that read its page must not fail for them.
      await Promise.all(stale.map((id) => this.forget(id).catch(() => 0)));
    }
    return { jobs, nextPageToken: atEnd || !cursor ? '' : encodePageToken(cursor) };
  }

  /**
   * Indexed jobs by state and model, for /metrics: one read of the counts, after the entries
   * whose record expired have been dropped. The first call, and then one every
   * RECONCILE_INTERVAL_MS, first checks the queued and running jobs against their records.
   */
  async counts(): Promise<JobCount[]> {
    await this.sweep();
    if (Date.now() - this.reconciledAtMs >= RECONCILE_INTERVAL_MS) {
      this.reconciledAtMs = Date.now();
      const fixed = await this.reconcileIndex();
      if (fixed > 0) this.options.logger?.info('STATE', 'job index repaired from the job records', { jobs: fixed });
    }
    const hash = await this.redis.hgetall(redisKeys.jobCounts());
    const counts: JobCount[] = [];
    for (const [field, value] of Object.entries(hash)) {
      const bar = field.indexOf('|');
      const state = field.slice(0, bar) as JobStateName;
      if (bar < 0 || !JOB_STATES.includes(state)) continue;
      counts.push({ state, model: field.slice(bar + 1), count: Number(value) });
    }
    return counts;
  }

  /** Ids of the queued and running jobs that run `model`, as their records say (not the index). */
  async activeJobsOf(model: string): Promise<string[]> {
    const ids = await this.redis.zrange(redisKeys.activeJobs(), 0, -1);
    const found: string[] = [];
    for (let i = 0; i < ids.length; i += MAX_LIST_LIMIT) {
      const chunk = ids.slice(i, i + MAX_LIST_LIMIT);
      const pipeline = this.redis.pipeline();
      for (const id of chunk) pipeline.hmget(redisKeys.job(id), 'state', 'model');
      const rows = (await pipeline.exec()) ?? [];
      rows.forEach(([, value], j) => {
        const [state, jobModel] = (value as Array<string | null> | null) ?? [];
        if ((state === 'queued' || state === 'running') && jobModel === model) found.push(chunk[j] ?? '');
      });
    }
    return found;
  }

  /**
   * Makes the index agree with the records of the jobs it holds as queued or running, and
   * returns how many it fixed: an update whose index write was lost (a crash between the two)
   * would otherwise count its job as running for ever. Reads one record per active job.
   */
  async reconcileIndex(): Promise<number> {
    const ids = await this.redis.zrange(redisKeys.activeJobs(), 0, -1);
    let fixed = 0;
    for (let i = 0; i < ids.length; i += MAX_LIST_LIMIT) {
      const chunk = ids.slice(i, i + MAX_LIST_LIMIT);
      const [records, indexed] = await Promise.all([this.summaries(chunk), this.redis.hmget(redisKeys.jobIndexStates(), ...chunk)]);
      const repairs: Array<Promise<unknown>> = [];
      chunk.forEach((id, j) => {
        const record = records[j];
        if (!record) repairs.push(this.forget(id));
        else if (indexed[j] !== `${record.state}|${record.model}`) repairs.push(this.index(record));
        else return;
        fixed += 1;
      });
      await Promise.all(repairs);
    }
    return fixed;
  }

  /** Drops the index entries of jobs whose record expired; returns how many. */
  async sweep(): Promise<number> {
    let dropped = 0;
    for (;;) {
      const n = await this.redis.conclaveSweepJobIndex(...INDEX_KEYS(), String(Date.now()), String(SWEEP_BATCH));
      dropped += n;
      if (n < SWEEP_BATCH) return dropped;
    }
  }

  private index(record: Pick<JobRecord, 'id' | 'createdAtMs' | 'state' | 'model'>): Promise<number> {
    const now = Date.now();
    return this.redis.conclaveIndexJob(
      ...INDEX_KEYS(), record.id, String(record.createdAtMs), record.state, record.model,
      String(now + this.resultTtlSeconds * 1000), String(this.maxEndedIndexed), String(now),
    );
  }

  private forget(id: string): Promise<number> {
    return this.redis.conclaveIndexJob(...INDEX_KEYS(), id, '0', '', '', '0', String(this.maxEndedIndexed), String(Date.now()));
  }

  /**
   * Up to `count` index entries after `cursor` (or from the newest), newest first; `exhausted`
   * when none follow them.
   */
  private async entriesAfter(
    key: string, cursor: IndexCursor | undefined, count: number,
  ): Promise<{ entries: IndexCursor[]; exhausted: boolean }> {
    // Entries of one score come in descending id order: those at the cursor's score with an id
    // at or above its own were on earlier pages. Many jobs created in one millisecond may take
    // more than one read to get past.
    let offset = 0;
    for (;;) {
      const flat = await this.redis.zrevrangebyscore(key, cursor ? cursor.score : '+inf', '-inf', 'WITHSCORES', 'LIMIT', offset, count);
      const read: IndexCursor[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) read.push({ id: flat[i] ?? '', score: Number(flat[i + 1]) });
      const entries = cursor ? read.filter((e) => e.score < cursor.score || (e.score === cursor.score && e.id < cursor.id)) : read;
      const exhausted = read.length < count;
      if (entries.length > 0 || exhausted) return { entries, exhausted };
      offset += count;
    }
  }

  /** The summary fields of each job, undefined where the record is gone. */
  private async summaries(ids: readonly string[]): Promise<Array<JobRecord | undefined>> {
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hmget(redisKeys.job(id), ...SUMMARY_FIELDS);
    const rows = (await pipeline.exec()) ?? [];
    return rows.map(([err, value]) => {
      if (err) throw err;
      const values = value as Array<string | null>;
      if (!values[0]) return undefined;
      const hash: Record<string, string> = {};
      SUMMARY_FIELDS.forEach((field, i) => {
        const v = values[i];
        if (v !== null && v !== undefined) hash[field] = v;
      });
      return deserialize(hash);
    });
  }
}

function matches(record: JobRecord, query: JobListQuery): boolean {
  if (query.state && record.state !== query.state) return false;
  if (query.model !== undefined && query.model !== '' && record.model !== query.model) return false;
  if (query.nodes && !query.nodes.has(record.node)) return false;
  return true;
}

function encodePageToken(cursor: IndexCursor): string {
  return Buffer.from(`${cursor.score}:${cursor.id}`).toString('base64url');
}

/** ORCH-REQ-203 for a token this store did not make. */
function decodePageToken(token: string): IndexCursor {
  const match = /^(\d{1,16}):(.{1,200})$/s.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (!match?.[1] || !match[2]) throw new ConclaveError('ORCH-REQ-203', { detail: 'page_token is not one a ListJobs answer gave' });
  return { score: Number(match[1]), id: match[2] };
}

/** The timings of a job's lifecycle log lines, from its record. */
export type JobTimings = {
  /** From submission to its latest attempt's start (or to its end, when it never started). */
  queueMs: number;
  /** On the node, as it reported; without a report, from the latest attempt's start to the end. */
  runMs: number;
  /** From submission to the end. */
  totalMs: number;
  attempts: number;
};

export function jobTimings(r: JobRecord, nowMs = Date.now()): JobTimings {
  const end = r.finishedAtMs > 0 ? r.finishedAtMs : nowMs;
  const started = r.startedAtMs ?? 0;
  return {
    queueMs: Math.max(0, (started > 0 ? started : end) - r.createdAtMs),
    // To the hundredth: a log line says 9.96, not 9.964795999999751.
    runMs: Math.round((r.runMs > 0 ? r.runMs : started > 0 ? Math.max(0, end - started) : 0) * 100) / 100,
    totalMs: Math.max(0, end - r.createdAtMs),
    attempts: r.attempts,
  };
}

/** The hash fields of a partial record: objects as JSON, everything else as text. */
function serializePartial(change: Partial<JobRecord>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(change)) {
    if (value === undefined) continue;
    out[key] = typeof value === 'object' ? JSON.stringify(value) : String(value);
  }
  return out;
}

function serialize(r: JobRecord): Record<string, string> {
  const out: Record<string, string> = {
    id: r.id, state: r.state, kind: r.kind, model: r.model, node: r.node, attempts: String(r.attempts),
    createdAtMs: String(r.createdAtMs), finishedAtMs: String(r.finishedAtMs), runMs: String(r.runMs),
  };
  if (r.startedAtMs !== undefined) out.startedAtMs = String(r.startedAtMs);
  if (r.requirements) out.requirements = JSON.stringify(r.requirements);
  if (r.error) out.error = JSON.stringify(r.error);
  if (r.outputs) out.outputs = JSON.stringify(r.outputs);
  if (r.generated) out.generated = JSON.stringify(r.generated);
  return out;
}

function deserialize(h: Record<string, string>): JobRecord {
  return {
    id: h.id ?? '', state: (h.state ?? 'queued') as JobStateName, kind: h.kind ?? 'infer', model: h.model ?? '',
    node: h.node ?? '', attempts: Number(h.attempts ?? 0), createdAtMs: Number(h.createdAtMs ?? 0),
    finishedAtMs: Number(h.finishedAtMs ?? 0), runMs: Number(h.runMs ?? 0),
    ...(h.startedAtMs ? { startedAtMs: Number(h.startedAtMs) } : {}),
    ...(h.requirements ? { requirements: JSON.parse(h.requirements) as JobRequirements } : {}),
    ...(h.error ? { error: JSON.parse(h.error) as JobError } : {}),
    ...(h.outputs ? { outputs: JSON.parse(h.outputs) as Record<string, StoredTensor> } : {}),
    ...(h.generated ? { generated: JSON.parse(h.generated) as GenerateResult } : {}),
  };
}

const WIRE_STATE: Record<JobStateName, Job['state']> = {
  queued: 'JOB_STATE_QUEUED', running: 'JOB_STATE_RUNNING', completed: 'JOB_STATE_COMPLETED',
  failed: 'JOB_STATE_FAILED', cancelled: 'JOB_STATE_CANCELLED',
};

/** A state name as ListJobs takes it, or undefined for one that is none. */
export function jobStateOf(name: string): JobStateName | undefined {
  return (JOB_STATES as readonly string[]).includes(name) ? (name as JobStateName) : undefined;
}

/** The wire form; `waiting` says why a queued job cannot run (the control service finds it). */
export function toWireJob(r: JobRecord, waiting = ''): Job {
  return {
    id: r.id, state: WIRE_STATE[r.state], model: r.model, node: r.node, attempts: r.attempts, kind: r.kind,
    createdAtMs: r.createdAtMs, finishedAtMs: r.finishedAtMs, runMs: r.runMs,
    outputs: r.outputs ? loadTensors(r.outputs) : {},
    // An attempt's error stays in the record for the log, but a completed job has none.
    error: r.state === 'completed' ? null : r.error ?? null,
    generated: r.generated ?? null,
    requirements: r.requirements
      ? { accelerator: r.requirements.accelerator, capability: r.requirements.capability, preferAccelerator: r.requirements.preferAccelerator ?? '' }
      : null,
    waiting: r.state === 'queued' ? waiting : '',
  };
}
