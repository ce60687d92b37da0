// Plain values only: orchestrator-options.ts (and so the CLI's schema) reads these.

/** How much the fleet log store keeps, and what it takes from one node; orchestrator options (docs/configuration.md). */
export interface LogLimits {
  /** MAXLEN ~ of the fleet stream. @default DEFAULT_LOG_MAX_RECORDS */
  maxRecords: number;
  /** Records older than this are trimmed (on the next append). @default DEFAULT_LOG_MAX_AGE_MS */
  maxAgeMs: number;
  /** MAXLEN ~ of one node's stream. @default DEFAULT_NODE_LOG_MAX_RECORDS */
  nodeMaxRecords: number;
  /** MAXLEN ~ of one job's stream. @default DEFAULT_JOB_LOG_MAX_RECORDS */
  jobMaxRecords: number;
  /** How long a job's index outlives its last record (never longer than maxAgeMs). @default DEFAULT_JOB_LOG_MAX_AGE_MS */
  jobMaxAgeMs: number;
  /** Records a second the orchestrator stores from one node; the rest are counted as a gap. @default DEFAULT_NODE_LOG_RATE_PER_SECOND */
  nodeRatePerSecond: number;
}

/**
 * About 60 MB of Redis memory at ~300 bytes a record. The node and job streams hold references
 * (an id, some 30 bytes), so the fleet stream's cap bounds what the records take.
 */
export const DEFAULT_LOG_MAX_RECORDS = 200_000;
export const DEFAULT_LOG_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
export const DEFAULT_NODE_LOG_MAX_RECORDS = 20_000;
export const DEFAULT_JOB_LOG_MAX_RECORDS = 2_000;
/** A day: `logs --job` is for recent jobs; a job's references then go (its records stay in the fleet stream, under its cap). */
export const DEFAULT_JOB_LOG_MAX_AGE_MS = 24 * 60 * 60 * 1000;
/**
 * Four times a node's own budget (500/s, burst 2,000), so a well-behaved node never meets it and
 * a broken or hostile one cannot fill the store; the burst is four seconds of it.
 */
export const DEFAULT_NODE_LOG_RATE_PER_SECOND = 2_000;
export const NODE_LOG_BURST_SECONDS = 4;

export const DEFAULT_LOG_LIMITS: Readonly<LogLimits> = Object.freeze({
  maxRecords: DEFAULT_LOG_MAX_RECORDS,
  maxAgeMs: DEFAULT_LOG_MAX_AGE_MS,
  nodeMaxRecords: DEFAULT_NODE_LOG_MAX_RECORDS,
  jobMaxRecords: DEFAULT_JOB_LOG_MAX_RECORDS,
  jobMaxAgeMs: DEFAULT_JOB_LOG_MAX_AGE_MS,
  nodeRatePerSecond: DEFAULT_NODE_LOG_RATE_PER_SECOND,
});

/**
 * History returned without `limit`: 200 records alone, 20 before following; the newest ones, or
 * with a start (`since`, `after_id`) the first ones from it.
 */
export const DEFAULT_HISTORY = 200;
export const DEFAULT_FOLLOW_HISTORY = 20;

/** The most history one read returns (TailLogs' `limit`). */
export const MAX_HISTORY = 10_000;

/** A stream id as `after_id` accepts it. */
export const STREAM_ID_PATTERN = /^\d{1,20}-\d{1,20}$/;
