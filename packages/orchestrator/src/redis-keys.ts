/**
 * Every Redis key the orchestrator writes, built in one place. BullMQ keeps its own
 * keys under `${KEY_PREFIX}bull:<queue>:…`.
 */
export const KEY_PREFIX = 'conclave:';

export const BULL_PREFIX = `${KEY_PREFIX}bull`;

export const JOB_QUEUE_NAME = 'jobs';

export const redisKeys = {
  /** Hash: one node's last known record (NodeInfo fields as strings). */
  node: (nodeId: string) => `${KEY_PREFIX}node:${nodeId}`,
  /** Set of every node id ever registered. */
  nodes: () => `${KEY_PREFIX}nodes`,
  /** Hash: one model's record (name, sha256, size, signature JSON). */
  model: (name: string) => `${KEY_PREFIX}model:${name}`,
  /** Set of model names. */
  models: () => `${KEY_PREFIX}models`,
  /** Hash: a job's record and, once done, its result; expires after the result TTL. */
  job: (jobId: string) => `${KEY_PREFIX}job:${jobId}`,
  /** String: job id for a client-chosen idempotency key. */
  clientJob: (clientJobId: string) => `${KEY_PREFIX}client-job:${clientJobId}`,
} as const;
