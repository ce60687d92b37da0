import { Worker } from 'node:worker_threads';
import { ConclaveError, isErrorCode, type Logger } from '@conclave/common';
import type { EngineRequest, FromWorker, ModelInfo, SerializedError, ToWorker } from './engine-protocol.js';
import type { FinishReason } from './generation-loop.js';
import type { MemoryProbe } from './memory-probe.js';
import type { ModelFiles } from './model-files.js';

/** unloaded → loading → warming → ready → draining → unloaded; loading|warming → failed. */
export type EngineState = 'unloaded' | 'loading' | 'warming' | 'ready' | 'draining' | 'failed';

const TRANSITIONS: Readonly<Record<EngineState, readonly EngineState[]>> = {
  unloaded: ['loading'],
  loading: ['warming', 'failed', 'draining'],
  warming: ['ready', 'failed', 'draining'],
  ready: ['draining', 'failed'],
  draining: ['unloaded'],
  failed: ['draining', 'unloaded'],
};

export interface GenerateOptions {
  requestId: string;
  signal?: AbortSignal;
  /** Text deltas, when `request.stream` is set. */
  onDelta?: (text: string) => void;
  /** The first token exists (streaming or not): time to first token ends here. */
  onFirstToken?: () => void;
  /** The prompt is tokenized and accepted. */
  onStarted?: (promptTokens: number) => void;
}

export interface GenerationResult {
  text: string;
  finishReason: FinishReason;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/** A loaded model that generates text; the runtime behind it is not the caller's business. */
export interface Engine {
  readonly state: EngineState;
  readonly info: ModelInfo;
  /** Requests the engine is generating right now. */
  readonly active: number;
  generate(request: EngineRequest, options: GenerateOptions): Promise<GenerationResult>;
  /** Cancels running generations and frees their KV caches (memory emergency). */
  freeCaches(): Promise<number>;
  dispose(): Promise<void>;
}

export interface WorkerEngineOptions {
  files: ModelFiles;
  logger: Logger;
  /** @default 1 */
  intraOpThreads?: number;
  /** Run one short generation before reporting ready. @default true */
  warmup?: boolean;
  memoryProbe: MemoryProbe;
  /** Peak memory during load ÷ weight bytes, as measured by the textgen benchmark. @default 1.7 */
  loadOverhead?: number;
  /** Bytes that must stay free after loading. @default 256 MiB */
  memoryMarginBytes?: number;
  onStateChange?: (state: EngineState) => void;
  /** A session was created (the sessions gauge counts these). */
  onSessionCreated?: () => void;
  /** The worker died outside dispose(). */
  onCrash?: (err: ConclaveError) => void;
}

interface Pending {
  resolve: (r: GenerationResult) => void;
  reject: (e: unknown) => void;
  options: GenerateOptions;
  cleanup: () => void;
  firstSeen?: boolean;
}

/** The worker entry, next to this module in dist/; tests running from src/ use the built file. */
function workerUrl(): URL {
  const here = import.meta.url;
  return here.endsWith('.ts') ? new URL('../dist/engine-worker.js', here) : new URL('./engine-worker.js', here);
}

export function errorFromWorker(error: SerializedError): ConclaveError {
  const code = isErrorCode(error.code) ? error.code : 'MODEL-RESP-301';
  return new ConclaveError(code, {
    ...(error.detail === undefined ? {} : { detail: error.detail }),
    ...(error.field === undefined ? {} : { data: { field: error.field } }),
  });
}

/** The Engine on onnxruntime-node in a worker thread. */
export class WorkerEngine implements Engine {
  private stateValue: EngineState = 'unloaded';
  private infoValue: ModelInfo | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private disposing = false;
  private freeWaiters: Array<(n: number) => void> = [];

  private constructor(
    private readonly worker: Worker,
    private readonly options: WorkerEngineOptions,
  ) {}

  get state(): EngineState {
    return this.stateValue;
  }

  get info(): ModelInfo {
    if (!this.infoValue) throw new Error('engine not loaded');
    return this.infoValue;
  }

  get active(): number {
    return this.pending.size;
  }

  /**
   * Checks memory, starts the worker and loads the model by path. Resolves once
   * the warm-up pass succeeded; rejects with a MODEL-LOAD error (the worker is
   * terminated) otherwise.
   */
  static async create(options: WorkerEngineOptions): Promise<WorkerEngine> {
    checkMemoryForLoad(options);
    const worker = new Worker(workerUrl());
    const engine = new WorkerEngine(worker, options);
    engine.setState('loading');
    return engine.load();
  }

  private load(): Promise<WorkerEngine> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: ConclaveError): void => {
        if (settled) return;
        settled = true;
        this.setState('failed');
        // A failed load is final for this engine: its worker's exit is not a crash to recover from.
        this.disposing = true;
        void this.worker.terminate();
        reject(err);
      };
      this.worker.on('message', (message: FromWorker) => {
        if (message.t === 'loaded') {
          this.infoValue = message.info;
          this.setState('ready');
          settled = true;
          resolve(this);
        } else if (message.t === 'load-failed') {
          fail(errorFromWorker(message.error));
        } else {
          this.onMessage(message);
        }
      });
      this.worker.on('error', (err) => {
        const wrapped = new ConclaveError(settled ? 'MODEL-RESP-302' : 'MODEL-LOAD-101', { detail: err.message, cause: err });
        if (!settled) fail(wrapped);
        else this.crashed(wrapped);
      });
      this.worker.on('exit', (code) => {
        const err = new ConclaveError(settled ? 'MODEL-RESP-302' : 'MODEL-LOAD-101', { detail: `worker exited with code ${code}` });
        if (!settled) fail(err);
        else this.crashed(err);
      });
      const load: ToWorker = {
        t: 'load',
        modelDir: this.options.files.dir,
        intraOpThreads: this.options.intraOpThreads ?? 1,
        warmup: this.options.warmup ?? true,
      };
      this.worker.postMessage(load);
    });
  }

  private setState(next: EngineState): void {
    const from = this.stateValue;
    if (from === next) return;
    if (!TRANSITIONS[from].includes(next)) {
      this.options.logger.warn('LOAD', 'engine state change refused', { from, to: next });
      return;
    }
    this.stateValue = next;
    this.options.logger.info('LOAD', 'engine state changed', { from, to: next, modelDir: this.options.files.dir });
    this.options.onStateChange?.(next);
  }

  private crashed(err: ConclaveError): void {
    if (this.disposing) return;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.cleanup();
      p.reject(err);
    }
    this.setState('failed');
    this.options.onCrash?.(err);
  }

  private onMessage(message: FromWorker): void {
    switch (message.t) {
      case 'state':
        this.setState(message.state);
        return;
      case 'session-created':
        this.options.onSessionCreated?.();
        return;
      case 'log':
        this.options.logger[message.level](message.section, message.message, message.meta);
        return;
      case 'caches-freed': {
        const waiters = this.freeWaiters;
        this.freeWaiters = [];
        for (const w of waiters) w(message.cancelled);
        return;
      }
      case 'loaded':
      case 'load-failed':
        return;
    }
    const p = this.pending.get(message.id);
    if (!p) return; // already rejected (cancelled or timed out): late messages are dropped
    switch (message.t) {
      case 'started':
        p.options.onStarted?.(message.promptTokens);
        return;
      case 'first-token':
        p.firstSeen = true;
        p.options.onFirstToken?.();
        return;
      case 'delta':
        if (!p.firstSeen) {
          p.firstSeen = true;
          p.options.onFirstToken?.();
        }
        p.options.onDelta?.(message.text);
        return;
      case 'done':
        this.pending.delete(message.id);
        p.cleanup();
        p.resolve({
          text: message.text,
          finishReason: message.finishReason,
          usage: {
            prompt_tokens: message.promptTokens,
            completion_tokens: message.completionTokens,
            total_tokens: message.promptTokens + message.completionTokens,
          },
        });
        return;
      case 'failed':
        this.pending.delete(message.id);
        p.cleanup();
        p.reject(errorFromWorker(message.error));
        return;
    }
  }

  generate(request: EngineRequest, options: GenerateOptions): Promise<GenerationResult> {
    if (this.stateValue !== 'ready') {
      return Promise.reject(new ConclaveError('MODEL-REQ-208', { detail: `engine is ${this.stateValue}` }));
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        // Reject now, not when the worker acknowledges: the worker stops before its next forward pass.
        const p = this.pending.get(id);
        if (!p) return;
        this.pending.delete(id);
        this.post({ t: 'cancel', id });
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve,
        reject,
        options,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      });
      this.post({ t: 'generate', id, requestId: options.requestId, request });
    });
  }

  freeCaches(): Promise<number> {
    return new Promise((resolve) => {
      this.freeWaiters.push(resolve);
      this.post({ t: 'free-caches' });
    });
  }

  private post(message: ToWorker): void {
    this.worker.postMessage(message);
  }

  /** Cancels what runs, stops the worker (which releases the session) and waits for it. */
  async dispose(): Promise<void> {
    if (this.disposing) return;
    this.disposing = true;
    if (this.stateValue !== 'unloaded') this.setState('draining');
    const err = new ConclaveError('MODEL-RESP-302', { detail: 'engine disposed' });
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.cleanup();
      p.reject(err);
    }
    // terminate() stops the thread between JS turns; a forward pass in native code finishes first.
    const timer = setTimeout(() => {
      this.options.logger.failure(new ConclaveError('MODEL-CLEAN-951', { detail: 'worker still running after 5 s' }));
    }, 5_000);
    try {
      await this.worker.terminate();
    } finally {
      clearTimeout(timer);
    }
    this.setState('unloaded');
  }
}

/**
 * Refuses a load that would not fit: weight bytes × the measured overhead must
 * stay below what is free minus the margin. A refused load costs nothing; a
 * load that runs out of memory takes the process down.
 */
export function checkMemoryForLoad(options: Pick<WorkerEngineOptions, 'files' | 'memoryProbe' | 'loadOverhead' | 'memoryMarginBytes'>): void {
  const sample = options.memoryProbe.sample();
  const needBytes = Math.ceil(options.files.weightBytes * (options.loadOverhead ?? 1.7));
  const freeBytes = sample.limitBytes - sample.usedBytes;
  const marginBytes = options.memoryMarginBytes ?? 256 * 2 ** 20;
  if (needBytes > freeBytes - marginBytes) {
    throw new ConclaveError('MODEL-LOAD-104', {
      detail: `need ${mib(needBytes)} MiB, ${mib(freeBytes)} MiB free, margin ${mib(marginBytes)} MiB`,
      data: { needBytes, freeBytes, marginBytes, weightBytes: options.files.weightBytes },
    });
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / 2 ** 20);
}
