import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ConclaveError, type ErrorCode, type Logger } from '@conclave/common';
import type { WireTensor } from '@conclave/protocol';
import {
  assertInputsMatch, type BackendModel, type InferenceBackend, type RunOptions, type RunResult,
} from './inference-backend.js';
import type { InferenceWorkerData, WorkerReply, WorkerRequest } from './inference-worker.js';
import { toTransfer, transferListOf, wireFromTransfer, type TransferTensor } from './ort-tensors.js';

export interface CpuBackendOptions {
  /** Worker threads, each running one job at a time: the node's slots. */
  workers: number;
  logger: Logger;
  /**
   * onnxruntime intra-op threads per worker.
   * @default 1: the workers already keep one core each busy; more threads per run only
   * oversubscribe the board's cores.
   */
  intraOpThreads?: number;
}

export interface ResolvedCpuBackendOptions {
  readonly workers: number;
  readonly logger: Logger;
  readonly intraOpThreads: number;
}

/** `running` → `disposing` → `disposed`; no way back. */
export type CpuBackendState = 'running' | 'disposing' | 'disposed';

/** A worker that crashes sooner than this after its spawn is respawned after the same delay, not at once. */
const CRASH_LOOP_WINDOW_MS = 1_000;

export function resolveCpuBackendOptions(options: CpuBackendOptions): ResolvedCpuBackendOptions {
  const intraOpThreads = options.intraOpThreads ?? 1;
  if (!Number.isInteger(options.workers) || options.workers < 1) {
    throw new RangeError(`CpuBackend: workers must be a positive integer, got ${options.workers}`);
  }
  if (!Number.isInteger(intraOpThreads) || intraOpThreads < 1) {
    throw new RangeError(`CpuBackend: intraOpThreads must be a positive integer, got ${intraOpThreads}`);
  }
  return { workers: options.workers, logger: options.logger, intraOpThreads };
}

/**
 * The worker's compiled script. From dist/ it sits beside this module. Under vitest this
 * module runs from src/, where only the .ts exists and a worker thread cannot load
 * TypeScript, so the build output in ../dist is used (build before testing).
 */
function workerScriptUrl(): URL {
  const beside = new URL('./inference-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(beside))) return beside;
  return new URL('../dist/inference-worker.js', import.meta.url);
}

interface Job {
  readonly id: number;
  readonly kind: 'load' | 'run';
  readonly sha256: string;
  readonly path: string;
  readonly inputs: Record<string, TransferTensor>;
  readonly resolve: (reply: WorkerReply) => void;
  readonly reject: (err: ConclaveError) => void;
  worker?: PoolWorker;
  /** Failed by timeout, abort or dispose while its worker still runs it; its reply is dropped. */
  abandoned: boolean;
}

interface PoolWorker {
  readonly slot: number;
  readonly thread: Worker;
  readonly spawnedAt: number;
  job?: Job;
  /** Set when the pool closes the thread itself; its exit is then not a crash. */
  retiring: boolean;
  exited: boolean;
  lastError?: Error;
}

/**
 * Runs ONNX models with onnxruntime-node in a pool of worker threads, so that a
 * blocking `session.run` never delays the agent's heartbeats. A job waits in FIFO order
 * for an idle worker; each worker opens a session per model lazily, by path.
 */
export class CpuBackend implements InferenceBackend {
  readonly name = 'cpu' as const;
  readonly options: ResolvedCpuBackendOptions;
  private readonly logger: Logger;
  private readonly scriptUrl = workerScriptUrl();
  private readonly workers: Array<PoolWorker | undefined>;
  private readonly queue: Job[] = [];
  private readonly models = new Map<string, BackendModel>();
  private readonly loading = new Map<string, Promise<void>>();
  private nextJobId = 1;
  private crashNextJob = false;
  private stateValue: CpuBackendState = 'running';

  /** Starts the pool and waits until every worker has loaded onnxruntime. */
  static async create(options: CpuBackendOptions): Promise<CpuBackend> {
    const backend = new CpuBackend(resolveCpuBackendOptions(options));
    try {
      await Promise.all(backend.workers.map((w) => (w ? backend.whenReady(w) : Promise.resolve())));
    } catch (err) {
      await backend.dispose();
      throw err;
    }
    backend.logger.info('STATE', 'cpu backend started', {
      workers: backend.options.workers,
      intraOpThreads: backend.options.intraOpThreads,
    });
    return backend;
  }

  private constructor(options: ResolvedCpuBackendOptions) {
    this.options = options;
    this.logger = options.logger.child({ backend: 'cpu' });
    this.workers = Array.from({ length: options.workers }, (_, slot) => this.spawn(slot));
  }

  get state(): CpuBackendState {
    return this.stateValue;
  }

  /** Pool occupancy, for heartbeats and metrics. */
  stats(): { workers: number; busy: number; queued: number } {
    const busy = this.workers.filter((w) => w?.job).length;
    return { workers: this.options.workers, busy, queued: this.queue.length };
  }

  loadedModels(): string[] {
    return [...this.models.keys()];
  }

  async load(model: BackendModel): Promise<void> {
    this.assertRunning();
    if (this.models.has(model.sha256)) return;
    let pending = this.loading.get(model.sha256);
    if (!pending) {
      pending = this.loadOnce(model).finally(() => this.loading.delete(model.sha256));
      this.loading.set(model.sha256, pending);
    }
    return pending;
  }

  private async loadOnce(model: BackendModel): Promise<void> {
    const started = performance.now();
    const reply = await this.submit('load', model.sha256, model.path, {});
    if (reply.kind !== 'loaded') throw new Error(`unexpected reply ${reply.kind} to load`);
    const mismatch = signatureMismatch(model, reply.inputNames, reply.outputNames);
    if (mismatch) {
      this.postAll({ kind: 'unload', sha256: model.sha256 });
      throw new ConclaveError('NODE-LOAD-110', { detail: mismatch, data: { model: model.sha256, path: model.path } });
    }
    this.models.set(model.sha256, model);
    this.logger.info('LOAD', 'model loaded', {
      model: model.sha256,
      path: model.path,
      loadMs: Math.round(performance.now() - started),
    });
  }

  async run(sha256: string, inputs: Record<string, WireTensor>, options: RunOptions = {}): Promise<RunResult> {
    this.assertRunning();
    const model = this.models.get(sha256);
    if (!model) throw new ConclaveError('NODE-LOAD-102', { data: { model: sha256 } });
    assertInputsMatch(sha256, model.inputs, inputs);
    const transfers: Record<string, TransferTensor> = {};
    for (const [name, tensor] of Object.entries(inputs)) transfers[name] = toTransfer(tensor);
    const reply = await this.submit('run', sha256, model.path, transfers, options);
    if (reply.kind !== 'result') throw new Error(`unexpected reply ${reply.kind} to run`);
    const outputs: Record<string, WireTensor> = {};
    for (const [name, tensor] of Object.entries(reply.outputs)) outputs[name] = wireFromTransfer(tensor);
    return { outputs, runMs: reply.runMs };
  }

  async unload(sha256: string): Promise<void> {
    if (!this.models.delete(sha256)) return;
    this.postAll({ kind: 'unload', sha256 });
    this.logger.info('CLEAN', 'model unloaded', { model: sha256 });
  }

  /**
   * Fails queued and running jobs at once, then closes the workers. A worker inside
   * `session.run` is closed when that run returns: terminating a thread while
   * onnxruntime-node runs in it aborts the whole process (a Napi::Error thrown into a
   * dying environment), so dispose waits for the run instead.
   */
  async dispose(): Promise<void> {
    if (this.stateValue !== 'running') return;
    this.setState('disposing');
    const stopped = new ConclaveError('NODE-STATE-711');
    for (const job of this.queue.splice(0)) job.reject(stopped);
    const exits: Array<Promise<void>> = [];
    for (const w of this.workers) {
      if (!w) continue;
      if (w.job && !w.job.abandoned) {
        w.job.abandoned = true;
        w.job.reject(stopped);
      }
      exits.push(this.close(w));
    }
    this.models.clear();
    await Promise.all(exits);
    this.workers.fill(undefined);
    this.setState('disposed');
  }

  /**
   * Test hook: the next job's worker throws an uncaught error before running it, as a
   * crashing worker would, so that the job fails and the worker is replaced.
   * @internal
   */
  simulateWorkerCrash(): void {
    this.crashNextJob = true;
  }

  private submit(
    kind: Job['kind'],
    sha256: string,
    path: string,
    inputs: Record<string, TransferTensor>,
    options: RunOptions = {},
  ): Promise<WorkerReply> {
    const { signal, timeoutMs } = options;
    if (signal?.aborted) return Promise.reject(new ConclaveError('NODE-JOB-801', { data: { model: sha256 } }));
    return new Promise<WorkerReply>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const job: Job = {
        id: this.nextJobId++,
        kind,
        sha256,
        path,
        inputs,
        resolve: (reply) => {
          cleanup();
          resolve(reply);
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
        abandoned: false,
      };
      const onAbort = () => this.abandon(job, new ConclaveError('NODE-JOB-801', { data: { model: sha256 } }));
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () => this.abandon(job, new ConclaveError('NODE-JOB-812', { detail: `${timeoutMs} ms`, data: { model: sha256 } })),
          timeoutMs,
        );
      }
      this.queue.push(job);
      this.dispatch();
    });
  }

  /**
   * Fails a job that timed out or was aborted. A queued job is dropped. A running one
   * cannot be interrupted inside onnxruntime (and its thread cannot be terminated, see
   * `dispose`), so the job fails now and its worker stays busy until the run returns;
   * the result is then dropped.
   */
  private abandon(job: Job, err: ConclaveError): void {
    if (job.abandoned) return;
    const index = this.queue.indexOf(job);
    if (index >= 0) this.queue.splice(index, 1);
    if (job.worker) job.abandoned = true;
    job.reject(err);
    this.logger.failure(err, { model: job.sha256, job: job.id }, 'warn');
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const w = this.workers.find((candidate) => candidate && !candidate.job && !candidate.retiring);
      if (!w) return;
      const job = this.queue.shift()!;
      w.job = job;
      job.worker = w;
      const request: WorkerRequest =
        job.kind === 'load'
          ? { kind: 'load', id: job.id, sha256: job.sha256, path: job.path }
          : { kind: 'run', id: job.id, sha256: job.sha256, path: job.path, inputs: job.inputs };
      if (this.crashNextJob) {
        this.crashNextJob = false;
        w.thread.postMessage({ kind: 'crash' } satisfies WorkerRequest);
      }
      w.thread.postMessage(request, transferListOf(job.inputs));
    }
  }

  private spawn(slot: number): PoolWorker {
    const workerData: InferenceWorkerData = { intraOpThreads: this.options.intraOpThreads };
    const thread = new Worker(this.scriptUrl, { workerData, name: `conclave-inference-${slot}` });
    const w: PoolWorker = { slot, thread, spawnedAt: Date.now(), retiring: false, exited: false };
    thread.on('message', (reply: WorkerReply) => this.onReply(w, reply));
    thread.on('error', (err) => {
      w.lastError = err;
    });
    thread.on('exit', (exitCode) => this.onExit(w, exitCode));
    return w;
  }

  private whenReady(w: PoolWorker): Promise<void> {
    return new Promise((resolve, reject) => {
      const onMessage = (reply: WorkerReply) => {
        if (reply.kind !== 'ready') return;
        w.thread.off('message', onMessage);
        w.thread.off('exit', onExit);
        resolve();
      };
      const onExit = (exitCode: number) => {
        w.thread.off('message', onMessage);
        reject(new ConclaveError('NODE-JOB-811', {
          detail: w.lastError?.message ?? `exit code ${exitCode} before it was ready`,
          data: { slot: w.slot, exitCode },
          cause: w.lastError,
        }));
      };
      w.thread.on('message', onMessage);
      w.thread.once('exit', onExit);
    });
  }

  private onReply(w: PoolWorker, reply: WorkerReply): void {
    if (reply.kind === 'ready') return;
    const job = w.job;
    if (!job || job.id !== reply.id) return;
    w.job = undefined;
    if (job.abandoned) {
      // The pool gave up on this job (timeout, abort); the worker is free again.
    } else if (reply.kind === 'failed') {
      job.reject(this.failureOf(job, reply.stage, reply.message));
    } else {
      job.resolve(reply);
    }
    this.dispatch();
  }

  private failureOf(job: Job, stage: 'load' | 'run', message: string): ConclaveError {
    const code: ErrorCode = stage === 'load' ? 'NODE-LOAD-101' : 'NODE-JOB-813';
    return new ConclaveError(code, { detail: message, data: { model: job.sha256, path: job.path } });
  }

  private onExit(w: PoolWorker, exitCode: number): void {
    w.exited = true;
    if (this.workers[w.slot] === w) this.workers[w.slot] = undefined;
    if (!w.retiring) {
      const err = new ConclaveError('NODE-JOB-811', {
        detail: w.lastError?.message ?? `exit code ${exitCode}`,
        data: { slot: w.slot, exitCode, ...(w.job ? { model: w.job.sha256, job: w.job.id } : {}) },
        cause: w.lastError,
      });
      this.logger.failure(err);
      if (w.job && !w.job.abandoned) w.job.reject(err);
      w.job = undefined;
    }
    if (this.stateValue !== 'running') return;
    const sinceSpawn = Date.now() - w.spawnedAt;
    if (!w.retiring && sinceSpawn < CRASH_LOOP_WINDOW_MS) {
      setTimeout(() => this.respawn(w.slot), CRASH_LOOP_WINDOW_MS).unref();
    } else {
      this.respawn(w.slot);
    }
  }

  private respawn(slot: number): void {
    if (this.stateValue !== 'running' || this.workers[slot]) return;
    this.workers[slot] = this.spawn(slot);
    this.logger.info('STATE', 'inference worker started', { slot });
    this.dispatch();
  }

  /** Asks a worker to release its sessions and end after its current job. */
  private close(w: PoolWorker): Promise<void> {
    w.retiring = true;
    if (w.exited) return Promise.resolve();
    return new Promise((resolve) => {
      w.thread.once('exit', () => resolve());
      w.thread.postMessage({ kind: 'close' } satisfies WorkerRequest);
    });
  }

  private postAll(request: WorkerRequest): void {
    for (const w of this.workers) if (w && !w.retiring) w.thread.postMessage(request);
  }

  private assertRunning(): void {
    if (this.stateValue !== 'running') throw new ConclaveError('NODE-STATE-711', { data: { state: this.stateValue } });
  }

  private setState(next: CpuBackendState): void {
    const previous = this.stateValue;
    this.stateValue = next;
    this.logger.info('STATE', 'cpu backend state changed', { from: previous, to: next });
  }
}

/** Names the declared signature gets wrong, or undefined; an empty declaration is not checked. */
function signatureMismatch(model: BackendModel, inputNames: string[], outputNames: string[]): string | undefined {
  const problems: string[] = [];
  const compare = (what: string, declared: readonly { name?: string }[], actual: string[]) => {
    if (declared.length === 0) return;
    const names = declared.map((s) => s.name ?? '');
    const missing = names.filter((n) => !actual.includes(n));
    const extra = actual.filter((n) => !names.includes(n));
    if (missing.length || extra.length) {
      problems.push(`${what}: declared [${names.join(', ')}], the file has [${actual.join(', ')}]`);
    }
  };
  compare('inputs', model.inputs, inputNames);
  compare('outputs', model.outputs, outputNames);
  return problems.length ? problems.join('; ') : undefined;
}
