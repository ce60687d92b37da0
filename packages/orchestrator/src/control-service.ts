import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { DEFAULT_MAX_PLAINTEXT_BYTES, checkInputs, encodeOrchestratorMessage, jobErrorOf } from '@conclave/protocol';
import type {
  NodeInfo, NodeRequest__Output, ListJobsRequest__Output, ListJobsResponse, RemoveModelRequest__Output,
  AddModelRequest__Output, ControlHandlers, GetJobRequest__Output, Job, ModelInfo, Requirements__Output, SubmitJobRequest__Output, WireTensor,
} from '@conclave/protocol';
import type { Dispatcher, JobData } from './dispatcher.js';
import { toServiceError, unary } from './grpc-errors.js';
import type { JobRecord, JobStore } from './job-store.js';
import {
  DEFAULT_LIST_LIMIT, JOB_STATES, MAX_LIST_LIMIT, jobStateOf, jobTimings, loadTensors, storeTensors, TERMINAL_STATES, toWireJob,
} from './job-store.js';
import type { ModelRegistry, ModelUpload } from './model-registry.js';
import { toModelInfo } from './model-registry.js';
import type { NodeRegistry } from './node-registry.js';
import { redisKeys } from './redis-keys.js';
import { hefChipsOf } from './model-bundle.js';
import { unmetNeed } from './scheduling/scheduler.js';
import type { JobNeeds, NodeOffer } from './scheduling/scheduler.js';
import { UNGUARDED } from './state-store-guard.js';
import type { StateStoreGuard } from './state-store-guard.js';

export interface ControlServiceOptions {
  redis: Redis;
  queue: Queue<JobData>;
  jobs: JobStore;
  models: ModelRegistry;
  registry: NodeRegistry;
  dispatcher: Dispatcher;
  logger: Logger;
  defaultJobTimeoutMs: number;
  /** Submissions beyond this many waiting jobs get RESOURCE_EXHAUSTED. */
  maxQueuedJobs: number;
  /** BullMQ attempts per job (first run + retries). */
  jobAttempts: number;
  /** Fails calls at once while Redis is away (ORCH-STATE-710). @default none */
  stateStore?: StateStoreGuard;
}

/** The longest timeout a job may ask for: a day. Longer is a mistake, not a job. */
export const MAX_JOB_TIMEOUT_MS = 24 * 60 * 60 * 1000;
/** The most tokens a generate job may ask for. */
export const MAX_GENERATE_TOKENS = 65_536;
/** Sampling temperature range, as OpenAI-compatible servers take it. */
export const MAX_TEMPERATURE = 2;

/**
 * How stale the queue depth may be when a submission is checked against maxQueuedJobs. The
 * limit guards against a runaway backlog, not an exact count, and counting costs a Redis
 * script per call; at a few thousand submissions a second this saves most of them.
 */
const QUEUE_DEPTH_MAX_AGE_MS = 250;

/** A value read at most once per `maxAgeMs`; concurrent readers share one read. */
class CachedValue<T> {
  private value: Promise<T> | undefined;
  private readAtMs = 0;

  constructor(
    private readonly read_: () => Promise<T>,
    private readonly maxAgeMs: number,
  ) {}

  read(): Promise<T> {
    const now = Date.now();
    if (!this.value || now - this.readAtMs > this.maxAgeMs) {
      this.readAtMs = now;
      this.value = this.read_().catch((err: unknown) => {
        this.value = undefined;
        throw err;
      });
    }
    return this.value;
  }
}

/** Highest BullMQ priority number (lowest priority), BullMQ's PRIORITY_LIMIT (2^21 − 1); BullMQ runs priority 1 first. */
const BULL_LOWEST_PRIORITY = 2 ** 21 - 1;

/** Handlers for jobs, nodes and models; the enrollment handlers come from admin-service.ts. */
export type JobControlHandlers = Omit<ControlHandlers, 'CreateJoinToken' | 'ListJoinTokens' | 'RevokeJoinToken' | 'ApproveNode' | 'RevokeNode'>;

/** Job ids a refusal to remove a model names, at most (the message says how many there are). */
const NAMED_JOBS_MAX = 3;

/**
 * Job.waiting for each queued record: the accelerator or capability that no node offers,
 * connected or known from an earlier session (an empty map: nothing to say). The connected
 * nodes are asked first, from memory; the known ones only when those do not offer it.
 */
export async function waitingReasons(registry: Pick<NodeRegistry, 'live' | 'list'>, records: readonly JobRecord[]): Promise<Map<string, string>> {
  const reasons = new Map<string, string>();
  let known: NodeInfo[] | undefined;
  for (const record of records) {
    if (record.state !== 'queued' || !record.requirements) continue;
    if (unmetNeed(registry.live(), needsOf(record)) === undefined) continue;
    known ??= await registry.list();
    const reason = unmetNeed(known.map(offerOf), needsOf(record));
    if (reason) reasons.set(record.id, reason);
  }
  return reasons;
}

/** What the record keeps of a job's needs (its requirements and, for Job.waiting, its model's HEF chips). */
function needsOf(record: JobRecord): Pick<JobNeeds, 'accelerator' | 'capability' | 'hefChips'> {
  const requirements = record.requirements;
  return {
    ...(requirements?.accelerator ? { accelerator: requirements.accelerator } : {}),
    ...(requirements?.capability ? { capability: requirements.capability } : {}),
    ...(requirements?.hefChips ? { hefChips: requirements.hefChips } : {}),
  };
}

/**
 * A listed node as an offer: a node not connected now has no accelerator serving, whatever its
 * last heartbeat said (a job waiting for one should say which nodes have it, and why not).
 */
function offerOf(n: NodeInfo): NodeOffer {
  const a = n.accelerator;
  const accelerator = a?.kind
    ? { kind: a.kind, arch: a.arch ?? '', ...(n.state === 'connected' ? { state: a.state ?? '', reason: a.reason ?? '' } : { state: 'unavailable', reason: `node ${n.state ?? 'disconnected'}` }) }
    : undefined;
  return { name: n.name ?? n.id ?? '', backends: n.backends ?? [], features: n.features ?? [], accelerator };
}

export function createControlService(o: ControlServiceOptions): JobControlHandlers {
  const { logger } = o;
  const guard = o.stateStore ?? UNGUARDED;
  /** A unary handler that needs Redis: refused at once while Redis is away, never left hanging. */
  const stateful = <Req, Res>(handler: (request: Req) => Promise<Res>) => unary(logger, (request: Req) => guard(() => handler(request)));
  const submitJob = createJobSubmitter(o);

  async function wireJobs(records: readonly JobRecord[]): Promise<Job[]> {
    const reasons = await waitingReasons(o.registry, records);
    return records.map((record) => toWireJob(record, reasons.get(record.id)));
  }

  async function getJob(request: { id: string }): Promise<Job> {
    const record = await o.jobs.get(request.id);
    if (!record) throw new ConclaveError('ORCH-JOB-801', { detail: request.id });
    const [job] = await wireJobs([record]);
    return job ?? toWireJob(record);
  }

  async function cancelJob(request: GetJobRequest__Output): Promise<Job> {
    const record = await o.jobs.get(request.id);
    if (!record) throw new ConclaveError('ORCH-JOB-801', { detail: request.id });
    if (TERMINAL_STATES.has(record.state)) return toWireJob(record);
    if (!o.dispatcher.cancel(request.id)) {
      // Not running here: take it out of the queue (a no-op if BullMQ already gave it to a worker).
      await o.queue.remove(request.id).catch(() => 0);
      const error = jobErrorOf(new ConclaveError('ORCH-JOB-803', { detail: 'cancelled while queued' }));
      const { applied, record: cancelled } = await o.jobs.tryUpdate(request.id, { state: 'cancelled', finishedAtMs: Date.now(), error });
      if (applied && cancelled) {
        logger.info('JOB', 'job cancelled', { jobId: cancelled.id, attempt: Math.max(1, cancelled.attempts), code: error.code, ...jobTimings(cancelled) });
      }
    }
    return getJob(request);
  }

  async function listJobs(request: ListJobsRequest__Output): Promise<ListJobsResponse> {
    const state = request.state ? jobStateOf(request.state) : undefined;
    if (request.state && !state) {
      throw new ConclaveError('ORCH-REQ-203', { detail: `state "${request.state}" is none of ${JOB_STATES.join(', ')}`, data: { field: 'state' } });
    }
    if (request.limit > MAX_LIST_LIMIT) outOfRange('limit', request.limit, `0 (the default, ${DEFAULT_LIST_LIMIT}) to ${MAX_LIST_LIMIT}`);
    const nodes = request.node ? new Set((await findNodes(request.node)).map((n) => n.id ?? '')) : undefined;
    const page = await o.jobs.list({
      ...(state ? { state } : {}), ...(request.model ? { model: request.model } : {}), ...(nodes ? { nodes } : {}),
      limit: request.limit, ...(request.pageToken ? { pageToken: request.pageToken } : {}),
    });
    return { jobs: await wireJobs(page.jobs), nextPageToken: page.nextPageToken };
  }

  /** The nodes an id or name names; ORCH-SCHED-854 for none. */
  async function findNodes(idOrName: string): Promise<NodeInfo[]> {
    const found = await o.registry.find(idOrName);
    if (found.length === 0) throw new ConclaveError('ORCH-SCHED-854', { detail: JSON.stringify(idOrName), data: { node: idOrName } });
    return found;
  }

  async function getNode(request: NodeRequest__Output): Promise<NodeInfo> {
    const [node, ...others] = await findNodes(request.id);
    if (others.length > 0) {
      const ids = [node, ...others].map((n) => n?.id ?? '');
      throw new ConclaveError('ORCH-SCHED-855', { detail: `"${request.id}": ${ids.join(', ')}`, data: { node: request.id, ids } });
    }
    return node as NodeInfo;
  }

  async function removeModel(request: RemoveModelRequest__Output): Promise<ModelInfo> {
    const model = await o.models.require(request.name);
    const needing = await o.jobs.activeJobsOf(model.name);
    if (needing.length > 0 && !request.force) {
      const named = needing.slice(0, NAMED_JOBS_MAX).join(', ') + (needing.length > NAMED_JOBS_MAX ? ', …' : '');
      throw new ConclaveError('ORCH-LOAD-106', {
        detail: `"${model.name}": ${needing.length} queued or running (${named})`, data: { model: model.name, jobs: needing.length },
      });
    }
    const removed = await o.models.remove(model.name);
    if (needing.length > 0) logger.warn('LOAD', 'model removed while jobs need it (--force)', { model: model.name, jobs: needing.length });
    return toModelInfo(removed);
  }

  /**
   * Streams a job's states until it ends. Subscribed before the first read, so no update is
   * lost; the stream ends exactly once, and after an update has been sent the first read (which
   * may return later, and older) is not sent at all: a final state that beat the read to the
   * stream used to be followed by that read's write, and the stream never ended.
   */
  function watchJob(call: grpc.ServerWritableStream<GetJobRequest__Output, Job>): void {
    const id = call.request.id;
    let ended = false;
    let updated = false;
    const end = (error?: unknown) => {
      if (ended) return;
      ended = true;
      o.jobs.off('update', onUpdate);
      // emit('error') sends the status to the client; destroy() would leave it hanging.
      if (error !== undefined) call.emit('error', Object.assign(new Error(), toServiceError(error, logger)));
      else call.end();
    };
    const send = (record: JobRecord) => {
      if (ended) return;
      call.write(toWireJob(record));
      if (TERMINAL_STATES.has(record.state)) end();
    };
    const onUpdate = (record: JobRecord) => {
      if (record.id !== id) return;
      updated = true;
      send(record);
    };
    o.jobs.on('update', onUpdate);
    call.on('cancelled', () => {
      ended = true;
      o.jobs.off('update', onUpdate);
    });
    guard(() => o.jobs.get(id)).then(
      (record) => {
        if (!record) end(new ConclaveError('ORCH-JOB-801', { detail: id }));
        else if (!updated) send(record);
      },
      (err: unknown) => end(err),
    );
  }

  function addModel(call: grpc.ServerReadableStream<AddModelRequest__Output, ModelInfo>, callback: grpc.sendUnaryData<ModelInfo>): void {
    let header: ModelUpload | undefined;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for await (const part of call as AsyncIterable<AddModelRequest__Output>) {
        if (part.part === 'header' && part.header && !header) {
          const { name, size, files, hailo } = part.header;
          header = { name, size: Number(size), files: files.map((f) => ({ ...f, size: Number(f.size) })), hailo };
          continue;
        }
        if (!header) throw new ConclaveError('ORCH-REQ-203', { detail: 'AddModel must start with a header' });
        if (part.data) yield part.data;
      }
    }
    const run = async () => {
      const iterator = chunks();
      // Read the header before handing the stream to the registry, which needs the name.
      const first = await iterator.next();
      if (!header) throw new ConclaveError('ORCH-REQ-203', { detail: 'AddModel must start with a header' });
      async function* rest(): AsyncGenerator<Uint8Array> {
        if (!first.done) yield first.value;
        yield* iterator;
      }
      const record = await o.models.add(header, rest());
      return toModelInfo(record);
    };
    guard(() => Promise.resolve()).then(run).then(
      (info) => callback(null, info),
      (err: unknown) => callback(toServiceError(err, logger)),
    );
  }

  async function setDraining(nodeId: string, draining: boolean): Promise<NodeInfo> {
    const node = await o.registry.setDraining(nodeId, draining);
    if (!node) throw new ConclaveError('ORCH-SCHED-852', { detail: nodeId, data: { node: nodeId } });
    return node;
  }

  return {
    SubmitJob: stateful(submitJob),
    GetJob: stateful(getJob),
    CancelJob: stateful(cancelJob),
    WatchJob: watchJob,
    ListJobs: stateful(listJobs),
    ListNodes: stateful(async () => ({ nodes: await o.registry.list() })),
    GetNode: stateful(getNode),
    DrainNode: stateful((request: NodeRequest__Output) => setDraining(request.id, true)),
    UndrainNode: stateful((request: NodeRequest__Output) => setDraining(request.id, false)),
    AddModel: addModel,
    ListModels: stateful(async () => ({ models: (await o.models.list()).map(toModelInfo) })),
    RemoveModel: stateful(removeModel),
  };
}

/**
 * Validates a job and queues it: the Control API's SubmitJob, and the orchestrator's own jobs
 * (the chat assistant's generations) through the same checks and limits.
 */
export function createJobSubmitter(
  o: Pick<ControlServiceOptions, 'redis' | 'queue' | 'jobs' | 'models' | 'logger' | 'defaultJobTimeoutMs' | 'maxQueuedJobs' | 'jobAttempts'>
    // With the registry, a job no node can run says so at once (Job.waiting) and in its queued line.
    & Partial<Pick<ControlServiceOptions, 'registry'>>,
): (request: SubmitJobRequest__Output) => Promise<Job> {
  const { logger } = o;
  const queueDepth = new CachedValue(() => o.queue.count(), QUEUE_DEPTH_MAX_AGE_MS);

  async function getJob(request: { id: string }): Promise<Job> {
    const record = await o.jobs.get(request.id);
    if (!record) throw new ConclaveError('ORCH-JOB-801', { detail: request.id });
    return toWireJob(record);
  }

  async function submitJob(request: SubmitJobRequest__Output): Promise<Job> {
    if (request.clientJobId) {
      const existing = await o.redis.get(redisKeys.clientJob(request.clientJobId));
      if (existing) return getJob({ id: existing });
    }
    const data = await buildJobData(request);
    const waiting = await queueDepth.read();
    if (waiting >= o.maxQueuedJobs) {
      throw new ConclaveError('ORCH-REQ-204', { detail: `${waiting} jobs waiting (limit ${o.maxQueuedJobs})` });
    }
    const id = randomUUID();
    if (request.clientJobId) {
      const claimed = await o.redis.set(redisKeys.clientJob(request.clientJobId), id, 'EX', 86_400, 'NX');
      if (claimed !== 'OK') return getJob({ id: (await o.redis.get(redisKeys.clientJob(request.clientJobId))) ?? '' });
    }
    const record: JobRecord = {
      id, state: 'queued', kind: data.kind, model: data.model?.name ?? '', node: '', attempts: 0,
      createdAtMs: Date.now(), finishedAtMs: 0, runMs: 0,
      requirements: {
        accelerator: data.needs.accelerator ?? '', capability: data.needs.capability ?? '', preferAccelerator: data.needs.preferAccelerator ?? '',
        ...(data.needs.hefChips ? { hefChips: [...data.needs.hefChips] } : {}),
      },
    };
    // The record and the queue entry go out together: one round trip on every submit. Both use
    // this connection and Redis runs a connection's commands in order, so the record exists
    // before any worker can pick the job.
    await Promise.all([o.jobs.create(record), o.queue.add(data.kind, data, {
      jobId: id,
      attempts: o.jobAttempts,
      // Full jitter, as DESIGN.md asks for every retry: base 250 ms.
      backoff: { type: 'exponential', delay: 250, jitter: 1 },
      removeOnComplete: true,
      removeOnFail: true,
      // Always a BullMQ priority, 0 included: BullMQ takes its unprioritized wait list before every
      // prioritized job, so a priority-0 job left unprioritized would run before priority 10.
      priority: Math.max(1, BULL_LOWEST_PRIORITY - request.priority),
    })]);
    const waitingFor = o.registry ? (await waitingReasons(o.registry, [record])).get(id) : undefined;
    logger.info('JOB', 'job queued', {
      jobId: id, attempt: 1, kind: data.kind, model: record.model, priority: request.priority,
      ...(data.needs.accelerator ? { accelerator: data.needs.accelerator } : {}),
      ...(data.needs.preferAccelerator ? { preferAccelerator: data.needs.preferAccelerator } : {}),
      ...(data.needs.capability ? { capability: data.needs.capability } : {}),
      ...(waitingFor ? { waiting: waitingFor } : {}),
    });
    return toWireJob(record, waitingFor);
  }

  async function buildJobData(request: SubmitJobRequest__Output): Promise<JobData> {
    const data = await jobDataOf(request);
    assertDeliverable(data);
    return data;
  }

  async function jobDataOf(request: SubmitJobRequest__Output): Promise<JobData> {
    if (request.timeoutMs > MAX_JOB_TIMEOUT_MS) outOfRange('timeout_ms', request.timeoutMs, `0 (the default) to ${MAX_JOB_TIMEOUT_MS}`);
    const timeoutMs = request.timeoutMs > 0 ? request.timeoutMs : o.defaultJobTimeoutMs;
    const requirements = request.requirements;
    if (request.payload === 'generate' && request.generate) {
      if (!request.generate.prompt) throw new ConclaveError('ORCH-REQ-203', { detail: 'generate needs a prompt' });
      const { temperature, maxTokens } = request.generate;
      if (!Number.isFinite(temperature) || temperature < 0 || temperature > MAX_TEMPERATURE) {
        outOfRange('generate.temperature', temperature, `0 to ${MAX_TEMPERATURE}`);
      }
      if (maxTokens > MAX_GENERATE_TOKENS) outOfRange('generate.max_tokens', maxTokens, `0 (the model's default) to ${MAX_GENERATE_TOKENS}`);
      return {
        kind: 'generate', generate: request.generate, timeoutMs,
        needs: { capability: 'text-generation', ...acceleratorNeeds(requirements) },
      };
    }
    if (request.payload !== 'infer' || !request.infer) {
      throw new ConclaveError('ORCH-REQ-203', { detail: 'a job needs "infer" (model + inputs) or "generate"' });
    }
    const model = await o.models.require(request.infer.model);
    const inputs = request.infer.inputs as Record<string, WireTensor>;
    const problem = checkInputs(model.inputs, inputs);
    if (problem) throw new ConclaveError('ORCH-REQ-201', { detail: problem, data: { model: model.name } });
    return {
      kind: 'infer',
      model: {
        name: model.name, sha256: model.sha256, size: model.size, inputs: model.inputs, outputs: model.outputs,
        // The node fetches of these only what it can use (a HEF for its chip, the parts around it).
        artifacts: model.artifacts, ...(model.hailo ? { hailo: model.hailo } : {}),
      },
      inputs: storeTensors(inputs),
      timeoutMs,
      needs: {
        modelSha256: model.sha256,
        hefChips: hefChipsOf(model.artifacts),
        ...acceleratorNeeds(requirements),
        ...(requirements?.capability ? { capability: requirements.capability } : {}),
      },
    };
  }

  /**
   * A job goes to its node in one sealed frame: one that cannot be sealed would be accepted,
   * then fail every attempt at delivery. Checked exactly (the AssignJob as it will be encoded)
   * only when the inputs come near the limit, so small jobs cost nothing.
   */
  function assertDeliverable(data: JobData): void {
    const approximate = Object.values(data.inputs ?? {}).reduce((sum, t) => sum + (t.raw.length * 3) / 4, 0) + (data.generate?.prompt?.length ?? 0) * 4;
    if (approximate < DEFAULT_MAX_PLAINTEXT_BYTES - 64 * 1024) return;
    const bytes = encodeOrchestratorMessage({
      assign: {
        jobId: '00000000-0000-0000-0000-000000000000', attempt: 1, kind: data.kind, timeoutMs: data.timeoutMs,
        ...(data.model ? { model: data.model } : {}),
        ...(data.inputs ? { inputs: loadTensors(data.inputs) } : {}),
        ...(data.generate ? { generate: data.generate } : {}),
      },
    }).byteLength;
    if (bytes > DEFAULT_MAX_PLAINTEXT_BYTES) {
      throw new ConclaveError('ORCH-REQ-206', {
        detail: `${bytes} bytes to send, limit ${DEFAULT_MAX_PLAINTEXT_BYTES}`, data: { bytes, limit: DEFAULT_MAX_PLAINTEXT_BYTES },
      });
    }
  }

  return submitJob;
}

/** A required accelerator, or else a preferred one (the preference means nothing beside a requirement). */
function acceleratorNeeds(requirements: Requirements__Output | null | undefined): Pick<JobNeeds, 'accelerator' | 'preferAccelerator'> {
  if (requirements?.accelerator) return { accelerator: requirements.accelerator };
  return requirements?.preferAccelerator ? { preferAccelerator: requirements.preferAccelerator } : {};
}

function outOfRange(field: string, value: number, range: string): never {
  throw new ConclaveError('ORCH-REQ-207', { detail: `${field} ${value} is outside ${range}`, data: { field } });
}

