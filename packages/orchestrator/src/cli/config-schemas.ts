import { ConclaveError, z, DURATION_PATTERN, parseDurationMs } from '@conclave/common';
import { isValidAddress } from '@conclave/protocol';
import { DEFAULT_CHAT_LIMITS } from '../chat/chat-limits.js';
import { DEFAULT_LOG_LIMITS, MAX_HISTORY } from '../logs/log-limits.js';
import { JOB_STATES } from '../job-store.js';
import { ORCHESTRATOR_DEFAULTS } from '../orchestrator-options.js';
import { DEFAULT_CLAIM_TTL_MS } from './chat-command.js';

const UINT32_MAX = 4_294_967_295;

// Plain z.number(): loadConfig turns numeric text from env and flags into numbers
// and leaves "7400x" as text, which then fails as "expected number, received string".
const port = (fallback: number) => z.number().int().min(0).max(65_535).default(fallback);
const logLevel = z.enum(['error', 'warn', 'info', 'debug']).default('info');

/** `30m`, `1h`, `7d` (units ms, s, m, h, d), as milliseconds. */
export const durationMs = z
  .string()
  .regex(DURATION_PATTERN, 'must be a duration such as 30m, 1h or 7d')
  .transform((text, ctx) => {
    const ms = parseDurationMs(text);
    if (ms === undefined || ms <= 0) {
      ctx.addIssue({ code: 'custom', message: 'must be a positive duration' });
      return z.NEVER;
    }
    return ms;
  });

/** `orchestrator start`'s own default: the orchestrator itself has none (OrchestratorOptions.dataDir). */
export const DEFAULT_DATA_DIR = './.conclave/orchestrator';

const defaults = ORCHESTRATOR_DEFAULTS;

/**
 * `orchestrator start`: flags > CONCLAVE_* env > YAML file > defaults, which come from
 * ORCHESTRATOR_DEFAULTS (orchestrator-options.ts documents each knob).
 * docs/configuration.md lists every key; keep the two in step.
 */
export const startConfigSchema = z.object({
  /** Absent: an embedded redis-server under <dataDir>/redis. */
  redisUrl: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional(),
  grpcHost: z.string().min(1).default(defaults.grpcHost),
  grpcPort: port(defaults.grpcPort),
  httpHost: z.string().min(1).default(defaults.httpHost),
  httpPort: z.number().int().min(-1).max(65_535).default(defaults.httpPort),
  dataDir: z.string().min(1).default(DEFAULT_DATA_DIR),
  logLevel,
  heartbeatIntervalMs: z.number().int().positive().default(defaults.heartbeatIntervalMs),
  resultTtlSeconds: z.number().int().positive().default(defaults.resultTtlSeconds),
  defaultJobTimeoutMs: z.number().int().positive().default(defaults.defaultJobTimeoutMs),
  maxQueuedJobs: z.number().int().positive().default(defaults.maxQueuedJobs),
  jobAttempts: z.number().int().positive().default(defaults.jobAttempts),
  maxSlotsPerNode: z.number().int().positive().max(4096).default(defaults.maxSlotsPerNode),
  /** Without TLS the Control API answers loopback callers only, unless this is set. */
  insecureControl: z.boolean().default(defaults.insecureControl),
  modelTransferStallMs: z.number().int().positive().default(defaults.modelTransferStallMs),
  // The group chat's bounds (docs/chat.md); defaults: DEFAULT_CHAT_LIMITS.
  chatMaxMessageBytes: z.number().int().min(1).max(1024 * 1024).default(DEFAULT_CHAT_LIMITS.maxMessageBytes),
  chatLogMaxLen: z.number().int().min(100).default(DEFAULT_CHAT_LIMITS.logMaxLen),
  chatContextMessages: z.number().int().min(1).max(1000).default(DEFAULT_CHAT_LIMITS.contextMessages),
  chatContextTokens: z.number().int().min(16).max(262_144).default(DEFAULT_CHAT_LIMITS.contextTokens),
  // The fleet log store's bounds (docs/operations.md, "Fleet logs"); defaults: DEFAULT_LOG_LIMITS.
  logMaxRecords: z.number().int().min(1_000).default(DEFAULT_LOG_LIMITS.maxRecords),
  logMaxAge: durationMs.default(DEFAULT_LOG_LIMITS.maxAgeMs),
  logNodeRate: z.number().int().min(1).default(DEFAULT_LOG_LIMITS.nodeRatePerSecond),
  approval: z.enum(['auto', 'manual']).default(defaults.approval),
  /** Absent: 127.0.0.1:<port> on loopback, else <hostname>:<port>, found at start. */
  advertiseAddress: z.string().refine(isValidAddress, 'must be HOST:PORT (IPv6 in brackets)').optional(),
  /** PEM certificate and key for gRPC over TLS; both or neither. */
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  /** Lifetime of a join token created without --ttl (`defaultTokenTtlMs`), as text such as 1h. */
  tokenTtl: durationMs.default(defaults.defaultTokenTtlMs),
  /** The Control API's bearer token (env CONCLAVE_OPERATOR_TOKEN); absent: <dataDir>/operator-token. */
  operatorToken: z.string().min(1).optional(),
});

/** Client commands (`models`, `nodes`, `jobs`, `token`). */
export const clientConfigSchema = z.object({
  /** The orchestrator's gRPC address, HOST:PORT. */
  address: z.string().refine(isValidAddress, 'must be HOST:PORT with a port from 1 to 65535 (IPv6 in brackets)').default('127.0.0.1:7400'),
  /** --token, CONCLAVE_OPERATOR_TOKEN; absent: read from <data-dir>/operator-token. */
  operatorToken: z.string().min(1).optional(),
  /** --tls-ca, CONCLAVE_TLS_CA: connect with TLS, trusting this PEM CA. */
  tlsCa: z.string().min(1).optional(),
});

/** `token create` flags. */
export const tokenCreateFlagsSchema = z.object({
  ttl: durationMs.optional(),
  json: z.boolean().default(false),
});

/** `jobs submit` flags: validated before anything is sent. */
export const submitFlagsSchema = z.object({
  kind: z.enum(['infer', 'generate']).default('infer'),
  model: z.string().min(1).optional(),
  input: z.string().optional(),
  prompt: z.string().optional(),
  maxTokens: z.coerce.number().int().min(1).max(UINT32_MAX).optional(),
  temperature: z.coerce.number().min(0).optional(),
  seed: z.coerce.number().int().min(0).optional(),
  priority: z.coerce.number().int().min(0).max(UINT32_MAX).optional(),
  timeoutMs: z.coerce.number().int().min(0).max(UINT32_MAX).optional(),
  accelerator: z.enum(['cpu', 'hailo']).optional(),
  preferAccelerator: z.enum(['hailo']).optional(),
  capability: z.string().min(1).optional(),
  clientJobId: z.string().min(1).optional(),
  wait: z.boolean().default(false),
  json: z.boolean().default(false),
});

/** A chat seq or fencing token: a whole number from 1 (the wire's uint64, within JavaScript's exact range). */
const positiveSeq = z.coerce.number({ error: 'must be a whole number from 1' }).int().min(1).max(Number.MAX_SAFE_INTEGER);

/** `chat send` flags. */
export const chatSendFlagsSchema = z.object({
  clientMsgId: z.string().min(1).optional(),
  json: z.boolean().default(false),
});

/** `chat tail` flags: `--from` is the first seq printed. */
/** `logs`: the history limit (the filters are checked by the query, logs/log-query.ts). */
export const logsFlagsSchema = z.object({
  limit: z.coerce.number({ error: `must be a whole number from 1 to ${MAX_HISTORY}` }).int().min(1).max(MAX_HISTORY).optional(),
});

export const chatTailFlagsSchema = z.object({
  from: positiveSeq.optional(),
  follow: z.boolean().default(false),
  json: z.boolean().default(false),
});

/** `chat claim` flags; the orchestrator bounds the TTL (100 ms to 24 h, CHAT-REQ-205). */
export const chatClaimFlagsSchema = z.object({
  ttl: durationMs.default(DEFAULT_CLAIM_TTL_MS),
  json: z.boolean().default(false),
});

/** `chat release` flags: the fence the claim answered with is required. */
export const chatReleaseFlagsSchema = z.object({
  fence: positiveSeq,
  json: z.boolean().default(false),
});

/** `--json` alone (list and get commands). */
export const readFlagsSchema = z.object({ json: z.boolean().default(false) });

/** Jobs `jobs list` prints when not told, and at most (it pages through ListJobs for them). */
export const DEFAULT_JOBS_LIST_LIMIT = 50;
export const MAX_JOBS_LIST_LIMIT = 10_000;

/** `jobs list` flags. */
export const jobsListFlagsSchema = z.object({
  state: z.enum(JOB_STATES).optional(),
  model: z.string().min(1).optional(),
  node: z.string().min(1).optional(),
  limit: z.coerce.number({ error: 'must be a whole number' }).int().min(1).max(MAX_JOBS_LIST_LIMIT).default(DEFAULT_JOBS_LIST_LIMIT),
  json: z.boolean().default(false),
});

/** `--hef CHIP=FILE.hef`: a HEF and the chip it was compiled for. */
const hefFlag = z
  .string()
  .regex(/^(hailo8|hailo8l)=.+$/, 'must be CHIP=FILE.hef with CHIP hailo8 or hailo8l')
  .transform((text) => {
    const at = text.indexOf('=');
    return { chip: text.slice(0, at) as 'hailo8' | 'hailo8l', path: text.slice(at + 1) };
  });

/** `models add` flags: the bundle's files besides model.onnx. */
export const addModelFlagsSchema = z.object({
  hef: z.array(hefFlag).default([]),
  pre: z.string().min(1).optional(),
  post: z.string().min(1).optional(),
  hailoManifest: z.string().min(1).optional(),
  json: z.boolean().default(false),
});

export type AddModelFlags = z.output<typeof addModelFlagsSchema>;

/** `models remove` flags. */
export const removeModelFlagsSchema = z.object({
  force: z.boolean().default(false),
  json: z.boolean().default(false),
});

export type StartConfigInput = z.input<typeof startConfigSchema>;
/** The resolved configuration of `orchestrator start`. */
export type StartConfig = z.output<typeof startConfigSchema>;
export type ClientConfig = z.output<typeof clientConfigSchema>;
export type SubmitFlags = z.output<typeof submitFlagsSchema>;

/** `maxTokens` → `--max-tokens`, for messages about flags. */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * Parses command flags (no env, no file) against `schema`; a mistake is
 * ORCH-REQ-253 naming each flag, so nothing is sent.
 */
export function parseFlags<S extends z.ZodType>(schema: S, flags: Record<string, unknown>): z.output<S> {
  const result = schema.safeParse(dropUndefined(flags));
  if (result.success) return result.data;
  const detail = result.error.issues
    .map((issue) => `${issue.path.length > 0 ? flagName(String(issue.path[0])) : 'flags'}: ${issue.message}`)
    .join('; ');
  throw new ConclaveError('ORCH-REQ-253', { detail, data: { flags: Object.keys(flags) } });
}

/** Commander leaves unset options undefined; dropping them lets env, file and defaults apply. */
export function dropUndefined(values: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined));
}
