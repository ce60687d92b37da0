import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { GenerateResult, Job, JobError, Tensor, WireTensor } from '@conclave/protocol';
import { redisKeys } from './redis-keys.js';

export type JobStateName = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export const TERMINAL_STATES: ReadonlySet<JobStateName> = new Set(['completed', 'failed', 'cancelled']);

/** Tensors as stored in Redis and in BullMQ job data: JSON with base64 bytes. */
export type StoredTensor = { dtype: string; dims: number[]; raw: string };

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
  error?: JobError;
  outputs?: Record<string, StoredTensor>;
  generated?: GenerateResult;
}

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

type RedisWithJobScripts = Redis & {
  conclaveUpdateJob(key: string, ttlSeconds: string, ...fields: string[]): Promise<Array<number | string>>;
};

export interface JobStoreEvents {
  update: [JobRecord];
}

/**
 * Job records and results in Redis. A record expires `resultTtlSeconds` after the job ends;
 * until then GetJob and WatchJob read it. Updates are also published in process for watchers.
 */
export class JobStore extends EventEmitter<JobStoreEvents> {
  private readonly redis: RedisWithJobScripts;

  constructor(
    redis: Redis,
    private readonly resultTtlSeconds: number,
  ) {
    super();
    this.setMaxListeners(0);
    if (!('conclaveUpdateJob' in redis)) redis.defineCommand('conclaveUpdateJob', { numberOfKeys: 1, lua: UPDATE_JOB_SCRIPT });
    this.redis = redis as RedisWithJobScripts;
  }

  async create(record: JobRecord): Promise<void> {
    await this.redis.hset(redisKeys.job(record.id), serialize(record));
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
    if (applied === 1) this.emit('update', record);
    return { applied: applied === 1, record };
  }
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
    ...(h.error ? { error: JSON.parse(h.error) as JobError } : {}),
    ...(h.outputs ? { outputs: JSON.parse(h.outputs) as Record<string, StoredTensor> } : {}),
    ...(h.generated ? { generated: JSON.parse(h.generated) as GenerateResult } : {}),
  };
}

const WIRE_STATE: Record<JobStateName, Job['state']> = {
  queued: 'JOB_STATE_QUEUED', running: 'JOB_STATE_RUNNING', completed: 'JOB_STATE_COMPLETED',
  failed: 'JOB_STATE_FAILED', cancelled: 'JOB_STATE_CANCELLED',
};

export function toWireJob(r: JobRecord): Job {
  return {
    id: r.id, state: WIRE_STATE[r.state], model: r.model, node: r.node, attempts: r.attempts, kind: r.kind,
    createdAtMs: r.createdAtMs, finishedAtMs: r.finishedAtMs, runMs: r.runMs,
    outputs: r.outputs ? loadTensors(r.outputs) : {},
    // An attempt's error stays in the record for the log, but a completed job has none.
    error: r.state === 'completed' ? null : r.error ?? null,
    generated: r.generated ?? null,
  };
}
