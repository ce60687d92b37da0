import type { LogTap, Logger } from '@conclave/common';
import { DEFAULT_CHAT_LIMITS, type ChatLimits } from './chat/chat-limits.js';
import { DEFAULT_LOG_LIMITS, type LogLimits } from './logs/log-limits.js';

// Types and plain values only: the CLI's schema reads ORCHESTRATOR_DEFAULTS, and client commands
// must not load what startOrchestrator needs (BullMQ, onnxruntime).

/** What `startOrchestrator` takes; `resolveOrchestratorOptions` fills in the defaults. */
export interface OrchestratorOptions {
  /** Redis to keep state in. @default an embedded redis-server under `<dataDir>/redis` */
  redisUrl?: string;
  /** gRPC listen host: sessions are sealed and the Control API needs the operator token. @default '0.0.0.0' */
  grpcHost?: string;
  /** 0 picks a free port. @default 7400 */
  grpcPort?: number;
  /** Health and metrics have no authentication, so they stay on loopback unless asked. @default '127.0.0.1' */
  httpHost?: string;
  /** 0 picks a free port; -1 disables HTTP. @default 7401 */
  httpPort?: number;
  /** The orchestrator's key, operator token, model files and (embedded) Redis data. */
  dataDir: string;
  logger: Logger;
  /** Node heartbeat period: the registry judges a node by the heartbeats it missed. @default 1000 */
  heartbeatIntervalMs?: number;
  /** How long results are kept after a job ends. @default 3600 */
  resultTtlSeconds?: number;
  /** Timeout of a job submitted without one. @default 30_000 */
  defaultJobTimeoutMs?: number;
  /** Above this many queued jobs, submits fail with ORCH-REQ-204. @default 100_000 */
  maxQueuedJobs?: number;
  /** First run plus retries. @default 5 */
  jobAttempts?: number;
  /** auto: a valid join token accepts a node; manual: it waits as pending until approved. @default 'auto' */
  approval?: 'auto' | 'manual';
  /**
   * What join strings tell nodes to dial.
   * @default `127.0.0.1:<grpc port>` when listening on loopback, else `<hostname>:<grpc port>`
   */
  advertiseAddress?: string;
  /** Lifetime of a join token created without a TTL. @default 3_600_000 (1 h) */
  defaultTokenTtlMs?: number;
  /** Bearer token for the Control API. @default read from `<dataDir>/operator-token`, generated at first start */
  operatorToken?: string;
  /** gRPC over TLS (in addition to the sealed sessions). @default none: plain gRPC */
  tls?: { certPath: string; keyPath: string };
  /**
   * The most slots one node is given, whatever it claims: a node is trusted with work, not
   * with how much of the fleet's it may hold. @default 16
   */
  maxSlotsPerNode?: number;
  /**
   * Without TLS the Control API answers only loopback callers (its bearer token would cross
   * the network in the clear); true lets plaintext callers from anywhere in. @default false
   */
  insecureControl?: boolean;
  /**
   * How long a model transfer waits for its node to take the next chunk before it is abandoned
   * and its file closed (ORCH-LOAD-105). @default 30_000
   */
  modelTransferStallMs?: number;
  /** The group chat's bounds: message size, log length, context window. @default DEFAULT_CHAT_LIMITS (chat/chat.ts) */
  chat?: Partial<ChatLimits>;
  /**
   * The logger's record output (a LogTap given to its createLogger): the orchestrator's own
   * records (ORCH-, CHAT-) go into the fleet log store from here. @default none: only the nodes' records are stored
   */
  logTap?: LogTap;
  /** The fleet log store's bounds and the per-node rate. @default DEFAULT_LOG_LIMITS (logs/log-limits.ts) */
  logs?: Partial<LogLimits>;
}

// The options whose default is known before start; the others are found at start (see their docs).
type DefaultedKey =
  | 'grpcHost'
  | 'grpcPort'
  | 'httpHost'
  | 'httpPort'
  | 'heartbeatIntervalMs'
  | 'resultTtlSeconds'
  | 'defaultJobTimeoutMs'
  | 'maxQueuedJobs'
  | 'jobAttempts'
  | 'approval'
  | 'defaultTokenTtlMs'
  | 'maxSlotsPerNode'
  | 'insecureControl'
  | 'modelTransferStallMs';

export interface ResolvedOrchestratorOptions extends Required<Pick<OrchestratorOptions, DefaultedKey | 'dataDir' | 'logger'>> {
  /** Absent: startOrchestrator launches an embedded redis-server. */
  redisUrl: string | undefined;
  /** Absent: derived from the bound gRPC port. */
  advertiseAddress: string | undefined;
  /** Absent: `<dataDir>/operator-token`. */
  operatorToken: string | undefined;
  tls: { certPath: string; keyPath: string } | undefined;
  chat: ChatLimits;
  logTap: LogTap | undefined;
  logs: LogLimits;
}

/**
 * The one place the orchestrator's defaults are written: `startOrchestrator` resolves with them
 * and `orchestrator start`'s schema (cli/config-schemas.ts) takes its defaults from them.
 */
export const ORCHESTRATOR_DEFAULTS: Readonly<Pick<ResolvedOrchestratorOptions, DefaultedKey>> = Object.freeze({
  grpcHost: '0.0.0.0',
  grpcPort: 7400,
  httpHost: '127.0.0.1',
  httpPort: 7401,
  heartbeatIntervalMs: 1000,
  resultTtlSeconds: 3600,
  defaultJobTimeoutMs: 30_000,
  maxQueuedJobs: 100_000,
  jobAttempts: 5,
  approval: 'auto',
  defaultTokenTtlMs: 3_600_000,
  maxSlotsPerNode: 16,
  insecureControl: false,
  modelTransferStallMs: 30_000,
});

export function resolveOrchestratorOptions(options: OrchestratorOptions): ResolvedOrchestratorOptions {
  const d = ORCHESTRATOR_DEFAULTS;
  return {
    redisUrl: options.redisUrl,
    grpcHost: options.grpcHost ?? d.grpcHost,
    grpcPort: options.grpcPort ?? d.grpcPort,
    httpHost: options.httpHost ?? d.httpHost,
    httpPort: options.httpPort ?? d.httpPort,
    dataDir: options.dataDir,
    logger: options.logger,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? d.heartbeatIntervalMs,
    resultTtlSeconds: options.resultTtlSeconds ?? d.resultTtlSeconds,
    defaultJobTimeoutMs: options.defaultJobTimeoutMs ?? d.defaultJobTimeoutMs,
    maxQueuedJobs: options.maxQueuedJobs ?? d.maxQueuedJobs,
    jobAttempts: options.jobAttempts ?? d.jobAttempts,
    approval: options.approval ?? d.approval,
    advertiseAddress: options.advertiseAddress,
    defaultTokenTtlMs: options.defaultTokenTtlMs ?? d.defaultTokenTtlMs,
    operatorToken: options.operatorToken,
    tls: options.tls,
    maxSlotsPerNode: options.maxSlotsPerNode ?? d.maxSlotsPerNode,
    insecureControl: options.insecureControl ?? d.insecureControl,
    modelTransferStallMs: options.modelTransferStallMs ?? d.modelTransferStallMs,
    chat: { ...DEFAULT_CHAT_LIMITS, ...options.chat },
    logTap: options.logTap,
    logs: { ...DEFAULT_LOG_LIMITS, ...options.logs },
  };
}
