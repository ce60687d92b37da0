import { ApiKeys } from './api-keys.js';
import { loadConfig, z, type LogLevel } from '@conclave/common';
import {
  DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, DEFAULT_PORT, LOAD_OVERHEAD, type ModelServerOptions,
} from './model-server-options.js';

/** Environment variables are this prefix plus the key in SCREAMING_SNAKE_CASE (`queueLimit` → CONCLAVE_MODEL_QUEUE_LIMIT). */
export const MODEL_ENV_PREFIX = 'CONCLAVE_MODEL_';

/** Every knob of `model-server start`; docs/model-server.md lists them with their env names. */
export const modelServerConfigSchema = z.object({
  dir: z.string().min(1).optional(),
  id: z.string().min(1).optional(),
  /** Every subdirectory is a model, loaded on first use (`--models-dir`). */
  modelsDir: z.string().min(1).optional(),
  port: z.number().int().min(0).max(65535).default(DEFAULT_PORT),
  host: z.string().min(1).default('127.0.0.1'),
  concurrency: z.number().int().min(1).max(1024).default(4),
  queueLimit: z.number().int().min(0).max(100_000).default(64),
  timeoutMs: z.number().int().min(1).default(120_000),
  keepAliveTimeoutMs: z.number().int().min(1).default(DEFAULT_KEEP_ALIVE_TIMEOUT_MS),
  headersTimeoutMs: z.number().int().min(1).default(DEFAULT_HEADERS_TIMEOUT_MS),
  maxTokensLimit: z.number().int().min(1).default(4096),
  whileLoading: z.enum(['reject', 'wait']).default('reject'),
  apiKeys: z.array(z.string()).default([]),
  apiKeyFile: z.string().min(1).optional(),
  threads: z.number().int().min(1).max(256).default(1),
  memorySoft: z.number().gt(0).max(1).default(0.9),
  memoryHard: z.number().gt(0).max(1).default(0.95),
  memoryMarginMb: z.number().min(0).default(256),
  loadOverhead: z.number().min(1).default(LOAD_OVERHEAD),
  logLevel: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
  logDir: z.string().min(1).optional(),
  /** Join this orchestrator (`host:port`) as a `text-generation` node. */
  orchestrator: z.string().min(1).optional(),
  /** The fleet member's node identity and outbox. */
  dataDir: z.string().min(1).default('.conclave/model-server'),
});

export type ModelServerConfig = z.output<typeof modelServerConfigSchema>;

/** Flags, then CONCLAVE_MODEL_* env, then an optional YAML file; throws MODEL-STATE-703 listing bad keys. */
export function loadModelServerConfig(source: {
  flags: Record<string, unknown>;
  env: Record<string, string | undefined>;
  file?: string;
}): ModelServerConfig {
  return loadConfig(modelServerConfigSchema, {
    flags: source.flags,
    env: source.env,
    envPrefix: MODEL_ENV_PREFIX,
    ...(source.file ? { file: source.file } : {}),
    errorCode: 'MODEL-STATE-703',
  });
}

/** Config → server options (minus the logger, which main builds). Reads the key file if named. */
export function configToOptions(config: ModelServerConfig): ModelServerOptions & { logLevel: LogLevel } {
  const keys = [...config.apiKeys, ...(config.apiKeyFile ? ApiKeys.readFile(config.apiKeyFile) : [])];
  return {
    ...(config.dir ? { modelDir: config.dir } : {}),
    ...(config.id ? { modelId: config.id } : {}),
    ...(config.modelsDir ? { modelsDir: config.modelsDir } : {}),
    port: config.port,
    host: config.host,
    concurrency: config.concurrency,
    queueLimit: config.queueLimit,
    requestTimeoutMs: config.timeoutMs,
    keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    headersTimeoutMs: config.headersTimeoutMs,
    maxTokensLimit: config.maxTokensLimit,
    whileLoading: config.whileLoading,
    apiKeys: keys,
    intraOpThreads: config.threads,
    memory: {
      softThreshold: config.memorySoft,
      hardThreshold: config.memoryHard,
      marginBytes: config.memoryMarginMb * 2 ** 20,
      loadOverhead: config.loadOverhead,
    },
    logLevel: config.logLevel,
  };
}
