import type * as grpc from '@grpc/grpc-js';
import { createControlClient } from '@conclave/protocol';
import type {
  Job__Output, ListJobsRequest, ListJobsResponse__Output, ModelInfo__Output, NodeInfo__Output, SubmitJobRequest, WireTensor,
} from '@conclave/protocol';

/** A promise-shaped Control client for tests and benchmarks. */
export interface TestControl {
  addModel(name: string, bytes: Uint8Array, chunkBytes?: number): Promise<ModelInfo__Output>;
  listModels(): Promise<ModelInfo__Output[]>;
  removeModel(name: string, force?: boolean): Promise<ModelInfo__Output>;
  listNodes(): Promise<NodeInfo__Output[]>;
  getNode(idOrName: string): Promise<NodeInfo__Output>;
  /** One ListJobs page. */
  listJobs(request?: ListJobsRequest): Promise<ListJobsResponse__Output>;
  submit(request: SubmitJobRequest): Promise<Job__Output>;
  infer(model: string, inputs: Record<string, WireTensor>, extra?: Partial<SubmitJobRequest>): Promise<Job__Output>;
  get(id: string): Promise<Job__Output>;
  cancel(id: string): Promise<Job__Output>;
  /** Resolves with the job's terminal state. */
  wait(id: string, timeoutMs?: number): Promise<Job__Output>;
  /**
   * Every update WatchJob streams for the job, once the server ends the stream (after a
   * terminal state); `onJob` sees each as it arrives.
   */
  watch(id: string, options?: { timeoutMs?: number; onJob?: (job: Job__Output) => void }): Promise<Job__Output[]>;
  /** Submits and waits. */
  run(model: string, inputs: Record<string, WireTensor>, extra?: Partial<SubmitJobRequest>): Promise<Job__Output>;
  /** A join string (CreateJoinToken), for a node to enroll with. */
  createJoinString(ttlMs?: number): Promise<string>;
  approveNode(id: string): Promise<NodeInfo__Output>;
  revokeNode(id: string): Promise<NodeInfo__Output>;
  drainNode(id: string): Promise<NodeInfo__Output>;
  undrainNode(id: string): Promise<NodeInfo__Output>;
  close(): void;
}

const TERMINAL = new Set(['JOB_STATE_COMPLETED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED']);

function call<T>(fn: (cb: (err: grpc.ServiceError | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value as T))));
}

/** Where a test finds an orchestrator: its handle (address and operator token), or an address. */
export type ControlTarget = string | { address: string; operatorToken?: string };

export function createTestControl(target: ControlTarget, options: { operatorToken?: string } = {}): TestControl {
  const address = typeof target === 'string' ? target : target.address;
  const operatorToken = options.operatorToken ?? (typeof target === 'string' ? undefined : target.operatorToken);
  const client = createControlClient(address, operatorToken !== undefined ? { operatorToken } : {});
  const api: TestControl = {
    addModel(name, bytes, chunkBytes = 64 * 1024) {
      return new Promise((resolve, reject) => {
        const stream = client.AddModel((err, info) => (err ? reject(err) : resolve(info as ModelInfo__Output)));
        stream.write({ header: { name, size: bytes.byteLength } });
        for (let offset = 0; offset < bytes.byteLength; offset += chunkBytes) {
          stream.write({ data: Buffer.from(bytes.subarray(offset, offset + chunkBytes)) });
        }
        stream.end();
      });
    },
    listModels: async () => (await call<{ models: ModelInfo__Output[] }>((cb) => client.ListModels({}, cb))).models,
    removeModel: (name, force = false) => call<ModelInfo__Output>((cb) => client.RemoveModel({ name, force }, cb)),
    listNodes: async () => (await call<{ nodes: NodeInfo__Output[] }>((cb) => client.ListNodes({}, cb))).nodes,
    getNode: (id) => call<NodeInfo__Output>((cb) => client.GetNode({ id }, cb)),
    listJobs: (request = {}) => call<ListJobsResponse__Output>((cb) => client.ListJobs(request, cb)),
    submit: (request) => call<Job__Output>((cb) => client.SubmitJob(request, cb)),
    infer: (model, inputs, extra = {}) => api.submit({ infer: { model, inputs }, ...extra }),
    get: (id) => call<Job__Output>((cb) => client.GetJob({ id }, cb)),
    cancel: (id) => call<Job__Output>((cb) => client.CancelJob({ id }, cb)),
    wait(id, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const stream = client.WatchJob({ id }, { deadline: Date.now() + timeoutMs });
        let last: Job__Output | undefined;
        stream.on('data', (job: Job__Output) => {
          last = job;
          // The server ends the stream after a terminal state. Cancelling it here instead would
          // send an HTTP/2 RST_STREAM per job, which Node's server rate-limits per connection.
          if (TERMINAL.has(job.state)) resolve(job);
        });
        stream.on('error', (err: grpc.ServiceError) => {
          if (last && TERMINAL.has(last.state)) return;
          reject(err);
        });
        stream.on('end', () => {
          if (last && TERMINAL.has(last.state)) resolve(last);
          else reject(new Error(`watch of ${id} ended in state ${last?.state ?? 'unknown'}`));
        });
      });
    },
    watch(id, { timeoutMs = 30_000, onJob } = {}) {
      return new Promise((resolve, reject) => {
        const stream = client.WatchJob({ id }, { deadline: Date.now() + timeoutMs });
        const seen: Job__Output[] = [];
        stream.on('data', (job: Job__Output) => {
          seen.push(job);
          onJob?.(job);
        });
        stream.on('error', (err: grpc.ServiceError) => reject(err));
        stream.on('end', () => resolve(seen));
      });
    },
    async run(model, inputs, extra) {
      const job = await api.infer(model, inputs, extra);
      return api.wait(job.id);
    },
    createJoinString: async (ttlMs) =>
      (await call<{ join: string }>((cb) => client.CreateJoinToken({ ttlSeconds: ttlMs ? Math.ceil(ttlMs / 1000) : 0 }, cb))).join,
    approveNode: (id) => call<NodeInfo__Output>((cb) => client.ApproveNode({ id }, cb)),
    revokeNode: (id) => call<NodeInfo__Output>((cb) => client.RevokeNode({ id }, cb)),
    drainNode: (id) => call<NodeInfo__Output>((cb) => client.DrainNode({ id }, cb)),
    undrainNode: (id) => call<NodeInfo__Output>((cb) => client.UndrainNode({ id }, cb)),
    close: () => client.close(),
  };
  return api;
}
