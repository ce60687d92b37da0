import { ConclaveError, toConclaveError, type Logger } from '@conclave/common';
import type { Engine, EngineState, WorkerEngineOptions } from './engine.js';
import type { EngineRegistry } from './engine-registry.js';
import type { ModelServerMetrics } from './metrics.js';
import { inspectModelDir, modelDirFingerprint, type ModelFiles } from './model-files.js';

/** What `/v1/models` says of a model (`conclave.state`). */
export type ModelAvailability = 'ready' | 'loading' | 'unloaded' | 'failed';

export interface ServedModelOptions {
  /** The id requests name in `model`. */
  id: string;
  /** The directory as configured (not yet resolved). */
  dir: string;
  /**
   * The default model (`--model` or the demo): inspected at start, loaded at once,
   * reloaded after a crash, and subject to `whileLoading`. A lazy one (a `--models-dir`
   * entry) loads on the first request that names it, makes requests wait while it
   * loads, and answers with its own load error when it cannot load.
   */
  lazy: boolean;
  /** The default model's directory, already checked by `inspectModelDir`. */
  files?: ModelFiles;
  /** Requests wait for a load in progress instead of a 503 (`whileLoading: 'wait'`; always for a lazy model). */
  waits: boolean;
  engines: EngineRegistry;
  engineOptions: Omit<WorkerEngineOptions, 'files' | 'logger' | 'onStateChange' | 'onCrash' | 'onSessionCreated'>;
  metrics: ModelServerMetrics;
  logger: Logger;
  onLoaded?: (engine: Engine) => void;
  onLoadFailed?: (err: ConclaveError) => void;
}

/**
 * One model the server answers for: its engine (through the shared single-flight
 * registry, so one session per model directory), its lifecycle and its load failure.
 */
export class ServedModel {
  readonly id: string;
  readonly lazy: boolean;
  readonly log: Logger;
  private stateValue: EngineState = 'unloaded';
  private engine: Engine | undefined;
  private enginePromise: Promise<Engine> | undefined;
  private files: ModelFiles | undefined;
  private loadErrorValue: ConclaveError | undefined;
  /** The directory as it was when the load failed; a lazy model loads again once it differs. */
  private failedFingerprint: string | undefined;
  private closed = false;

  constructor(private readonly o: ServedModelOptions) {
    this.id = o.id;
    this.lazy = o.lazy;
    this.files = o.files;
    this.log = o.logger.child({ model: o.id });
  }

  get state(): EngineState {
    return this.stateValue;
  }

  get dir(): string {
    return this.o.dir;
  }

  get loadError(): ConclaveError | undefined {
    return this.loadErrorValue;
  }

  /** The canonical directory (the registry and metrics key), once known. */
  get key(): string | undefined {
    return this.files?.dir;
  }

  /** Loaded or loading: the entry holds (or is about to hold) a session. */
  get holdsEngine(): boolean {
    return this.enginePromise !== undefined || this.engine !== undefined;
  }

  get availability(): ModelAvailability {
    switch (this.stateValue) {
      case 'ready':
        return 'ready';
      case 'failed':
        return 'failed';
      case 'loading':
      case 'warming':
        return 'loading';
      default:
        return 'unloaded';
    }
  }

  /** The ready engine, if there is one now. */
  get readyNow(): Engine | undefined {
    return this.stateValue === 'ready' ? this.engine : undefined;
  }

  /** Starts the single-flight load (or joins the one running); rejects with the MODEL-LOAD error. */
  load(): Promise<Engine> {
    if (this.enginePromise) return this.enginePromise;
    this.loadErrorValue = undefined;
    this.failedFingerprint = undefined;
    let files: ModelFiles;
    try {
      // A lazy model's directory is checked at each load: it may have changed since the last one.
      files = this.lazy || !this.files ? inspectModelDir(this.o.dir) : this.files;
    } catch (err) {
      this.failed(err);
      return Promise.reject(this.loadErrorValue);
    }
    this.files = files;
    if (this.lazy) this.log.info('LOAD', 'loading model on first use', { modelDir: files.dir, weightBytes: files.weightBytes });
    this.o.metrics.sessionsLoaded.set({ model: files.dir }, this.o.engines.sessionsLoaded(files.dir));
    const promise = this.o.engines.acquire(files, {
      ...this.o.engineOptions,
      logger: this.log,
      onStateChange: (state) => {
        this.stateValue = state;
      },
      onCrash: (err) => {
        this.log.failure(err);
        this.engine = undefined;
        this.enginePromise = undefined;
        this.stateValue = 'unloaded';
        // The default model comes back at once; a lazy one when a request names it again.
        if (!this.lazy && !this.closed) void this.load().catch(() => {});
      },
    });
    this.enginePromise = promise;
    this.stateValue = 'loading';
    promise.then(
      (engine) => {
        this.engine = engine;
        this.stateValue = engine.state;
        this.o.metrics.loadSeconds.set({ model: files.dir }, engine.info.loadSeconds);
        this.log.info('LOAD', 'model ready', {
          loadSeconds: round3(engine.info.loadSeconds),
          warmupSeconds: round3(engine.info.warmupSeconds),
          weightBytes: engine.info.weightBytes,
          contextLength: engine.info.contextLength,
          kvLayers: engine.info.layers,
        });
        this.o.onLoaded?.(engine);
      },
      (err: unknown) => {
        if (this.enginePromise === promise) this.enginePromise = undefined;
        this.failed(err);
      },
    );
    return promise;
  }

  private failed(err: unknown): void {
    const error = toConclaveError(err, 'MODEL-LOAD-101');
    // Over HTTP a missing file in a model the request named is the request's precondition failing
    // (400), not an unknown model (404, MODEL-REQ-205).
    this.loadErrorValue =
      this.lazy && error.code === 'MODEL-LOAD-102'
        ? new ConclaveError('MODEL-LOAD-108', { ...(error.detail ? { detail: error.detail } : {}), data: error.data, cause: error })
        : error;
    this.stateValue = 'failed';
    if (this.lazy) this.failedFingerprint = modelDirFingerprint(this.o.dir);
    this.log.failure(this.loadErrorValue);
    this.o.onLoadFailed?.(this.loadErrorValue);
  }

  /**
   * Refuses a request at once when it cannot be served: the remembered load
   * failure, or (when requests do not wait) a model that is not ready yet.
   */
  admit(): void {
    if (this.stateValue === 'ready') return;
    this.throwIfFailed();
    if (!this.o.waits) throw new ConclaveError('MODEL-REQ-208', { detail: `model is ${this.stateValue}` });
  }

  /** The ready engine; waits for a load in progress (starting one if needed) when requests wait. */
  async readyEngine(signal: AbortSignal): Promise<Engine> {
    if (this.engine && this.stateValue === 'ready') return this.engine;
    this.throwIfFailed();
    if (!this.o.waits) throw new ConclaveError('MODEL-REQ-208', { detail: `model is ${this.stateValue}` });
    const loading = this.load();
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    aborted.catch(() => {});
    return Promise.race([loading, aborted]);
  }

  /**
   * A failed load is not retried per request when retrying cannot help. A lazy
   * model answers with its own load error (a 4xx for a broken directory) until its
   * directory changes; the default model answers 503 MODEL-REQ-208 naming it.
   */
  private throwIfFailed(): void {
    const err = this.loadErrorValue;
    if (this.stateValue !== 'failed' || !err) return;
    if (this.lazy) {
      if (err.entry.retryable) return;
      if (modelDirFingerprint(this.o.dir) !== this.failedFingerprint) {
        this.log.info('LOAD', 'model directory changed since the failed load: loading again', { code: err.code });
        this.loadErrorValue = undefined;
        this.failedFingerprint = undefined;
        this.stateValue = 'unloaded';
        return;
      }
      throw err;
    }
    if (!err.entry.retryable || !this.o.waits) {
      throw new ConclaveError('MODEL-REQ-208', { detail: `model failed to load: ${err.code}` });
    }
  }

  /** Cancels running generations' KV caches (memory emergency). */
  async freeCaches(): Promise<number> {
    return (await this.readyNow?.freeCaches()) ?? 0;
  }

  /**
   * Disposes the engine. The default model loads again at once; a lazy one stays
   * unloaded until a request names it, which is what frees memory in an emergency.
   */
  async recycle(): Promise<void> {
    const key = this.key;
    if (!this.holdsEngine || key === undefined) return;
    this.engine = undefined;
    this.enginePromise = undefined;
    this.stateValue = 'draining';
    await this.o.engines.release(key);
    this.stateValue = 'unloaded';
    if (!this.lazy && !this.closed) await this.load().catch(() => {});
  }

  /** No reload after this (a crash while closing is not recovered). */
  close(): void {
    this.closed = true;
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
