import { basename } from 'node:path';
import { createLogger, type Logger } from '@conclave/common';
import { DEMO_MODEL_DIR, DEMO_MODEL_ID } from './demo-model.js';
import type { EngineRegistry } from './engine-registry.js';
import { SystemMemoryProbe, type MemoryProbe } from './memory-probe.js';

export interface MemoryOptions {
  /** Where readings come from. @default SystemMemoryProbe (cgroup v2, then /proc/meminfo) */
  probe?: MemoryProbe;
  /** Refuse new requests above this fraction of the memory available. @default 0.9 */
  softThreshold?: number;
  /** Emergency recovery above this fraction. @default 0.95 */
  hardThreshold?: number;
  /** Bytes that must stay free (soft pressure below it; also required after a load). @default 256 MiB */
  marginBytes?: number;
  /** Peak memory during load ÷ model bytes: 1.66 measured by the textgen benchmark, rounded up. @default 1.7 */
  loadOverhead?: number;
  /** @default 1000 */
  sampleIntervalMs?: number;
  /** Period of the MEM info summary. @default 60_000 */
  summaryIntervalMs?: number;
  /** After cancelling and freeing caches, how long memory has to come back before the worker is recycled. @default 2000 */
  recoveryGraceMs?: number;
}

export interface ModelServerOptions {
  /** A model directory as HF optimum exports it. @default the embedded demo model */
  modelDir?: string;
  /** The id served in /v1/models and expected in `model`. @default `conclave-demo` for the demo, else the directory name */
  modelId?: string;
  /**
   * A directory of models: each subdirectory is one (HF optimum layout), served under the
   * subdirectory's name and loaded on the first request that names it. A broken one answers
   * its requests with a 4xx; it never stops the server. @default none
   */
  modelsDir?: string;
  /** 0 picks a free port. @default 7402 */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** Generations running at once. @default 4 */
  concurrency?: number;
  /** Requests waiting beyond `concurrency`; more get 429. @default 64 */
  queueLimit?: number;
  /** Per-request limit, queue time included. @default 120_000 */
  requestTimeoutMs?: number;
  /** @default 1 MiB */
  maxBodyBytes?: number;
  /**
   * How long an idle keep-alive connection stays open. Clients that pool connections
   * (the openai client does) and load balancers (60 s idle by default on most) reuse a
   * connection after a pause; the server must not close it first. @default 75_000
   */
  keepAliveTimeoutMs?: number;
  /**
   * Longest wait for a request's headers (slow clients). Above the keep-alive timeout,
   * as Node's guidance for servers behind a balancer asks. @default 76_000
   */
  headersTimeoutMs?: number;
  /** Upper bound for max_tokens in a request (the context limits it too). @default 4096 */
  maxTokensLimit?: number;
  /** While the model loads: `reject` answers 503 + Retry-After, `wait` queues the request until ready. @default 'reject' */
  whileLoading?: 'reject' | 'wait';
  /** Retry-After on 503 answers. @default 2 */
  retryAfterSeconds?: number;
  /** Accepted API keys; none means no auth (logged as a warning). @default [] */
  apiKeys?: readonly string[];
  /** onnxruntime intra-op threads for one forward pass. @default 1 */
  intraOpThreads?: number;
  /** Run a warm-up generation before /health turns 200. @default true */
  warmup?: boolean;
  memory?: MemoryOptions;
  /** @default createLogger({ prefix: 'MODEL' }) */
  logger?: Logger;
  /** Share engines (and the load-once guarantee) between servers in one process. @default one per server */
  engines?: EngineRegistry;
}

export type ResolvedMemoryOptions = Required<MemoryOptions>;

export interface ResolvedModelServerOptions
  extends Required<Omit<ModelServerOptions, 'memory' | 'engines' | 'apiKeys' | 'modelsDir'>> {
  apiKeys: readonly string[];
  modelsDir: string | undefined;
  memory: ResolvedMemoryOptions;
  engines: EngineRegistry | undefined;
  isDemo: boolean;
}

export const DEFAULT_PORT = 7402;

/** nginx's keepalive_timeout: longer than the 60 s idle timeout of common load balancers. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 75_000;
export const DEFAULT_HEADERS_TIMEOUT_MS = 76_000;

/** Peak RSS growth while loading ÷ model file size, measured by `pnpm bench textgen` (1.66), rounded up. */
export const LOAD_OVERHEAD = 1.7;

export function resolveModelServerOptions(options: ModelServerOptions = {}): ResolvedModelServerOptions {
  const isDemo = options.modelDir === undefined;
  const modelDir = options.modelDir ?? DEMO_MODEL_DIR;
  const memory = options.memory ?? {};
  const resolved: ResolvedModelServerOptions = {
    modelDir,
    modelId: options.modelId ?? (isDemo ? DEMO_MODEL_ID : basename(modelDir.replace(/\/+$/, ''))),
    modelsDir: options.modelsDir,
    port: options.port ?? DEFAULT_PORT,
    host: options.host ?? '127.0.0.1',
    concurrency: options.concurrency ?? 4,
    queueLimit: options.queueLimit ?? 64,
    requestTimeoutMs: options.requestTimeoutMs ?? 120_000,
    maxBodyBytes: options.maxBodyBytes ?? 2 ** 20,
    keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
    headersTimeoutMs: options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
    maxTokensLimit: options.maxTokensLimit ?? 4096,
    whileLoading: options.whileLoading ?? 'reject',
    retryAfterSeconds: options.retryAfterSeconds ?? 2,
    apiKeys: options.apiKeys ?? [],
    intraOpThreads: options.intraOpThreads ?? 1,
    warmup: options.warmup ?? true,
    logger: options.logger ?? createLogger({ prefix: 'MODEL' }),
    engines: options.engines,
    isDemo,
    memory: {
      probe: memory.probe ?? new SystemMemoryProbe(),
      softThreshold: memory.softThreshold ?? 0.9,
      hardThreshold: memory.hardThreshold ?? 0.95,
      marginBytes: memory.marginBytes ?? 256 * 2 ** 20,
      loadOverhead: memory.loadOverhead ?? LOAD_OVERHEAD,
      sampleIntervalMs: memory.sampleIntervalMs ?? 1000,
      summaryIntervalMs: memory.summaryIntervalMs ?? 60_000,
      recoveryGraceMs: memory.recoveryGraceMs ?? 2000,
    },
  };
  const m = resolved.memory;
  if (!(m.softThreshold > 0 && m.softThreshold <= m.hardThreshold && m.hardThreshold <= 1)) {
    throw new RangeError(`memory thresholds must satisfy 0 < soft (${m.softThreshold}) <= hard (${m.hardThreshold}) <= 1`);
  }
  if (resolved.concurrency < 1 || resolved.queueLimit < 0) throw new RangeError('concurrency must be >= 1 and queueLimit >= 0');
  if (!(resolved.keepAliveTimeoutMs >= 1 && resolved.headersTimeoutMs >= 1)) {
    throw new RangeError('keepAliveTimeoutMs and headersTimeoutMs must be >= 1');
  }
  return resolved;
}
