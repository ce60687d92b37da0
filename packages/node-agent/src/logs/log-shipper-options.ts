import type { LogLevel, LogTap, Logger } from '@conclave/common';
import type { LogBatch } from '@conclave/protocol';
import { SEQ_RESERVE_BLOCK } from './seq-reservation.js';

/** Records at or above this level are shipped, whatever the agent's own log level. */
export const DEFAULT_LOG_SHIP_LEVEL: LogLevel = 'info';
/** The spool on disk holds this much at most (64 MiB): hours of a board's records with the link down. */
export const LOG_SPOOL_MAX_BYTES = 64 * 1024 * 1024;
/** The smallest spool bound accepted: four segments of 16 KiB. */
export const LOG_SPOOL_MIN_BYTES = 64 * 1024;
/** The rate budget, sustained: a busy board logs a few records a second. */
export const LOG_RATE_RECORDS_PER_SECOND = 500;
/** The rate budget's burst: a start-up or a failure storm passes whole. */
export const LOG_RATE_BURST_RECORDS = 2_000;
export const LOG_BATCH_MAX_RECORDS = 512;
/** Encoded: a batch is a small message beside heartbeats and results on the one session. */
export const LOG_BATCH_MAX_BYTES = 256 * 1024;
/**
 * How long records wait to be written and sent together when there is less than a full batch:
 * with one batch in flight this keeps the lag from logging to storing well under 1 s.
 */
export const LOG_FLUSH_INTERVAL_MS = 100;
/** Without an acknowledgement in this time the batch in flight goes again (the orchestrator dedups by seq). */
export const LOG_ACK_TIMEOUT_MS = 10_000;
/** A spool write that failed is tried again after this. */
export const LOG_WRITE_RETRY_MS = 1_000;
/** Records waiting in memory for the spool at most, encoded; past it more are only counted. */
export const LOG_MEMORY_MAX_BYTES = 4 * 1024 * 1024;

/** The session, as the shipper sees it. */
export interface LogBatchLink {
  /** Sends on the registered session; false when there is none. */
  send(batch: LogBatch): boolean;
}

export interface LogShipperOptions {
  /** The spool directory, `<dataDir>/log-spool`. */
  dir: string;
  /** Where the records come from: the tap of the agent's logger (and the model server's). */
  tap: LogTap;
  /** Left out of each record's fields: the session names the node. */
  nodeId: string;
  link: LogBatchLink;
  /** For the shipper's own warnings (NODE-STATE-720, NODE-STATE-721). */
  logger: Logger;
  /** @default LOG_SPOOL_MAX_BYTES */
  spoolMaxBytes?: number;
  /** @default the smaller of SPOOL_SEGMENT_MAX_BYTES and a quarter of spoolMaxBytes */
  segmentMaxBytes?: number;
  /** @default LOG_RATE_RECORDS_PER_SECOND */
  rateRecordsPerSecond?: number;
  /** @default LOG_RATE_BURST_RECORDS */
  rateBurstRecords?: number;
  /** @default LOG_BATCH_MAX_RECORDS */
  batchMaxRecords?: number;
  /** @default LOG_BATCH_MAX_BYTES */
  batchMaxBytes?: number;
  /** @default LOG_FLUSH_INTERVAL_MS */
  flushIntervalMs?: number;
  /** @default LOG_ACK_TIMEOUT_MS */
  ackTimeoutMs?: number;
  /** @default LOG_WRITE_RETRY_MS */
  writeRetryMs?: number;
  /** @default LOG_MEMORY_MAX_BYTES */
  memoryMaxBytes?: number;
  /** @default SEQ_RESERVE_BLOCK */
  seqReserveBlock?: number;
  /** Monotonic milliseconds for the rate budget; tests pin it. @default performance.now */
  nowMs?: () => number;
}

/** Every default decided; the segment size is the spool's own to decide. */
export type ResolvedLogShipperOptions = Required<Omit<LogShipperOptions, 'segmentMaxBytes'>> & Pick<LogShipperOptions, 'segmentMaxBytes'>;

export function resolveLogShipperOptions(o: LogShipperOptions): ResolvedLogShipperOptions {
  return {
    ...o,
    spoolMaxBytes: o.spoolMaxBytes ?? LOG_SPOOL_MAX_BYTES,
    rateRecordsPerSecond: o.rateRecordsPerSecond ?? LOG_RATE_RECORDS_PER_SECOND,
    rateBurstRecords: o.rateBurstRecords ?? LOG_RATE_BURST_RECORDS,
    batchMaxRecords: o.batchMaxRecords ?? LOG_BATCH_MAX_RECORDS,
    batchMaxBytes: o.batchMaxBytes ?? LOG_BATCH_MAX_BYTES,
    flushIntervalMs: o.flushIntervalMs ?? LOG_FLUSH_INTERVAL_MS,
    ackTimeoutMs: o.ackTimeoutMs ?? LOG_ACK_TIMEOUT_MS,
    writeRetryMs: o.writeRetryMs ?? LOG_WRITE_RETRY_MS,
    memoryMaxBytes: o.memoryMaxBytes ?? LOG_MEMORY_MAX_BYTES,
    seqReserveBlock: o.seqReserveBlock ?? SEQ_RESERVE_BLOCK,
    nowMs: o.nowMs ?? (() => performance.now()),
  };
}
