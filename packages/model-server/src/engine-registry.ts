import type { Logger } from '@conclave/common';
import { WorkerEngine, type Engine, type EngineState, type WorkerEngineOptions } from './engine.js';
import type { ModelFiles } from './model-files.js';

export interface EngineRegistryHooks {
  onStateChange?: (key: string, state: EngineState) => void;
  /** Sessions alive for a model changed (0 or 1): the sessions-loaded gauge. */
  onSessionsChange?: (key: string, sessions: number) => void;
  onSessionCreated?: (key: string) => void;
  onCrash?: (key: string) => void;
}

export type EngineFactory = (options: WorkerEngineOptions) => Promise<Engine>;

/**
 * Load exactly once: one single-flight promise per canonical model key (the
 * model directory's real path), stored before loading starts, so any number
 * of concurrent callers share one load and one session.
 */
export class EngineRegistry {
  private readonly engines = new Map<string, Promise<Engine>>();
  private readonly sessions = new Map<string, number>();

  constructor(
    private readonly logger: Logger,
    private readonly hooks: EngineRegistryHooks = {},
    private readonly factory: EngineFactory = (o) => WorkerEngine.create(o),
  ) {}

  /**
   * The engine for `files`, loading it if nobody has; a failed load is forgotten so a later call retries.
   * `options.logger` (default: the registry's) tags the engine's log lines with the model they are about.
   */
  acquire(files: ModelFiles, options: Omit<WorkerEngineOptions, 'files' | 'logger'> & { logger?: Logger }): Promise<Engine> {
    const key = files.dir;
    const existing = this.engines.get(key);
    if (existing) return existing;
    const promise = this.factory({
      ...options,
      files,
      logger: options.logger ?? this.logger,
      onStateChange: (state) => {
        if (state === 'unloaded' || state === 'failed') this.setSessions(key, 0);
        this.hooks.onStateChange?.(key, state);
        options.onStateChange?.(state);
      },
      onSessionCreated: () => {
        this.setSessions(key, 1);
        this.hooks.onSessionCreated?.(key);
      },
      onCrash: (err) => {
        this.engines.delete(key);
        this.hooks.onCrash?.(key);
        options.onCrash?.(err);
      },
    });
    this.engines.set(key, promise);
    promise.catch(() => {
      if (this.engines.get(key) === promise) this.engines.delete(key);
    });
    return promise;
  }

  /** The engine if it is loaded or loading. */
  peek(key: string): Promise<Engine> | undefined {
    return this.engines.get(key);
  }

  /** Disposes the engine of `key`; the next acquire loads it again. */
  async release(key: string): Promise<void> {
    const promise = this.engines.get(key);
    if (!promise) return;
    this.engines.delete(key);
    const engine = await promise.catch(() => undefined);
    await engine?.dispose();
    this.setSessions(key, 0);
  }

  async releaseAll(): Promise<void> {
    await Promise.all([...this.engines.keys()].map((key) => this.release(key)));
  }

  sessionsLoaded(key: string): number {
    return this.sessions.get(key) ?? 0;
  }

  private setSessions(key: string, n: number): void {
    if ((this.sessions.get(key) ?? 0) === n) return;
    this.sessions.set(key, n);
    this.hooks.onSessionsChange?.(key, n);
  }
}
