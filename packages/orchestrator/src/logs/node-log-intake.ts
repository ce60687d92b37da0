import { ConclaveError, LOG_LEVELS, SECTIONS, maskUrlCredentials, redact, toConclaveError } from '@conclave/common';
import type { LogLevel, LogPrefix, Logger, Section } from '@conclave/common';
import type { LogBatch__Output, LogGap__Output, ShippedLogRecord__Output } from '@conclave/protocol';
import type { LogMetrics } from './log-metrics.js';
import type { LogStore, NewLogEntry } from './log-store.js';
import { DEFAULT_NODE_LOG_RATE_PER_SECOND, NODE_LOG_BURST_SECONDS } from './log-limits.js';
import { TokenBucket } from './token-bucket.js';

/** Prefixes a node may ship: never ORCH, which only the orchestrator writes. */
const NODE_PREFIXES: ReadonlySet<string> = new Set<LogPrefix>(['NODE', 'MODEL', 'CHAT']);
const LEVELS: ReadonlySet<string> = new Set(LOG_LEVELS);
const SECTION_SET: ReadonlySet<string> = new Set(SECTIONS);

/** Longest message and fields JSON kept of a shipped record (the node cuts at the same sizes). */
export const MAX_SHIPPED_MESSAGE_CHARS = 2_048;
export const MAX_SHIPPED_FIELDS_CHARS = 8_192;
/** Records one batch may carry; the node sends at most 512. */
export const MAX_RECORDS_PER_BATCH = 1_024;
/** The longest one batch's store may take before it counts as failed (Redis away or stalled). */
export const STORE_TIMEOUT_MS = 5_000;

export interface LogShippingFigures {
  spoolBytes: number;
  droppedTotal: number;
}

export interface NodeLogIntakeOptions {
  nodeId: string;
  nodeName: string;
  store: LogStore;
  logger: Logger;
  metrics?: LogMetrics;
  /** Sends the LogAck once a batch is stored. */
  ack: (upToSeq: number) => void;
  /** @default DEFAULT_NODE_LOG_RATE_PER_SECOND; the burst is NODE_LOG_BURST_SECONDS of it */
  ratePerSecond?: number;
  now?: () => number;
}

/**
 * One node session's end of log shipping: batches are stored in the order they came, each at
 * most once (by seq), and acknowledged only once Redis holds them, so a batch lost to a Redis
 * outage stays in the node's spool. Gaps the node declares, and jumps it does not, become gap
 * records; what is over the node's budget or malformed is counted and shown as a gap too.
 */
export class NodeLogIntake {
  private lastSeq: number | undefined;
  /** The batch being stored, and the one that came meanwhile (a newer one, or the same sent again). */
  private storing: Promise<void> | undefined;
  private waiting: LogBatch__Output | undefined;
  private readonly bucket: TokenBucket;
  private malformedLogged = false;
  private storeFailureLogged = false;
  private closed = false;
  private spoolBytes = 0;
  private droppedTotal = 0;

  constructor(private readonly o: NodeLogIntakeOptions) {
    const rate = o.ratePerSecond ?? DEFAULT_NODE_LOG_RATE_PER_SECOND;
    this.bucket = new TokenBucket(rate, rate * NODE_LOG_BURST_SECONDS, o.now);
  }

  /**
   * Stores batches one at a time, in the order they came. At most one waits behind the one being
   * stored: a node sends its next batch only after an ack, so a batch that comes meanwhile is a
   * resend or newer, and replaces the waiting one (seq dedup makes either safe). A Redis outage
   * thus holds two batches per node, not one per resend.
   */
  receive(batch: LogBatch__Output): void {
    if (this.closed) return;
    this.spoolBytes = Number(batch.spoolBytes);
    this.droppedTotal = Number(batch.droppedTotal);
    this.o.metrics?.spoolBytes.set({ node: this.o.nodeName }, this.spoolBytes);
    this.waiting = batch;
    this.storing ??= this.drain().finally(() => {
      this.storing = undefined;
    });
  }

  /** What the node said in its last batch about its spool and its drops (`nodes get`). */
  figures(): LogShippingFigures {
    return { spoolBytes: this.spoolBytes, droppedTotal: this.droppedTotal };
  }

  /** The session ended: batches still waiting are not stored (the node sends them again). */
  close(): void {
    this.closed = true;
    this.waiting = undefined;
    this.o.metrics?.spoolBytes.remove({ node: this.o.nodeName });
  }

  /** Resolves when every batch received so far is handled (tests). */
  async idle(): Promise<void> {
    while (this.storing) await this.storing;
  }

  private async drain(): Promise<void> {
    for (let batch = this.takeWaiting(); batch && !this.closed; batch = this.takeWaiting()) {
      try {
        await this.withTimeout(this.store(batch));
        this.storeFailureLogged = false;
      } catch (err) {
        // Not acknowledged: the node sends the batch again. Logged once per streak, not per batch.
        if (!this.storeFailureLogged) {
          this.o.logger.failure(toConclaveError(err, 'ORCH-STATE-724'), { node: this.o.nodeId }, 'warn');
        }
        this.storeFailureLogged = true;
        this.lastSeq = undefined;
      }
    }
  }

  private takeWaiting(): LogBatch__Output | undefined {
    const batch = this.waiting;
    this.waiting = undefined;
    return batch;
  }

  /** A store that does not answer in STORE_TIMEOUT_MS counts as failed: no ack, and the node's resend tries again. */
  private withTimeout(work: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ConclaveError('ORCH-STATE-724', { detail: `no answer from Redis in ${STORE_TIMEOUT_MS} ms` })), STORE_TIMEOUT_MS);
    });
    return Promise.race([work, timedOut]).finally(() => clearTimeout(timer));
  }

  private async store(batch: LogBatch__Output): Promise<void> {
    if (this.closed) return;
    this.lastSeq ??= await this.o.store.lastNodeSeq(this.o.nodeId);
    let storedSeq = this.lastSeq;
    let batchTop = 0;
    let batchFirst = Number.MAX_SAFE_INTEGER;
    for (const record of batch.records.slice(0, MAX_RECORDS_PER_BATCH)) {
      batchTop = Math.max(batchTop, Number(record.seq));
      batchFirst = Math.min(batchFirst, Number(record.seq));
    }
    for (const gap of batch.gaps) {
      batchTop = Math.max(batchTop, Number(gap.toSeq));
      batchFirst = Math.min(batchFirst, Number(gap.fromSeq));
    }
    // A node sends its next batch only once the last is stored, so a batch wholly below what is
    // stored is no resend: the node's sequence started over (its spool and seq state were lost,
    // a board restored from an image). Taken as a restart, and said, instead of dropped as duplicates.
    const restarted = batchTop > 0 && batchTop < storedSeq;
    const prefix: NewLogEntry[] = [];
    if (restarted) {
      prefix.push(this.notice('ORCH-STATE-723', { reason: 'restarted', storedSeq, firstSeq: batchFirst }));
      storedSeq = batchFirst - 1;
    }
    const entries = this.entriesOf(batch, storedSeq);
    const upToSeq = Math.max(storedSeq, batchTop);
    const list = [...prefix, ...entries.list];
    const stored = await this.o.store.append(list, { nodeId: this.o.nodeId, upToSeq, ...(restarted ? { restartFrom: storedSeq } : {}) });
    this.lastSeq = upToSeq;
    this.o.metrics?.recordsReceived(list, stored);
    for (const [reason, count] of entries.dropped) this.o.metrics?.dropped.inc({ reason }, count);
    if (!this.closed) this.o.ack(upToSeq);
  }

  /** A gap-like record about this node's shipping, written by the orchestrator. */
  private notice(code: 'ORCH-STATE-723' | 'ORCH-REQ-264' | 'ORCH-REQ-265', fields: Record<string, unknown>): NewLogEntry {
    const error = new ConclaveError(code);
    return {
      timeMs: Date.now(), level: 'warn', prefix: 'ORCH', section: error.entry.section, code, message: error.entry.message,
      node: this.o.nodeId, nodeName: this.o.nodeName, fields, gap: true,
    };
  }

  /** The batch's records and gaps as entries, in seq order, with what was dropped and why. */
  private entriesOf(batch: LogBatch__Output, storedSeq: number): { list: NewLogEntry[]; dropped: Map<string, number> } {
    const dropped = new Map<string, number>();
    const drop = (reason: string) => dropped.set(reason, (dropped.get(reason) ?? 0) + 1);
    const items: Array<{ seq: number; record?: ShippedLogRecord__Output; gap?: LogGap__Output }> = [
      ...batch.records.slice(0, MAX_RECORDS_PER_BATCH).map((record) => ({ seq: Number(record.seq), record })),
      ...batch.gaps.map((gap) => ({ seq: Number(gap.fromSeq), gap })),
    ].sort((a, b) => a.seq - b.seq);
    if (batch.records.length > MAX_RECORDS_PER_BATCH) {
      for (let i = MAX_RECORDS_PER_BATCH; i < batch.records.length; i++) drop('malformed');
    }
    const list: NewLogEntry[] = [];
    let expected = storedSeq + 1;
    let overBudget = 0;
    let lastTimeMs = 0;
    for (const item of items) {
      const toSeq = item.gap ? Number(item.gap.toSeq) : item.seq;
      if (toSeq < expected) continue; // stored before: a batch sent again
      if (item.seq > expected) list.push(this.gapEntry('ORCH-STATE-723', expected, item.seq - 1, item.seq - expected, 'missing', lastTimeMs));
      expected = toSeq + 1;
      if (item.gap) {
        const count = Number(item.gap.count);
        if (count > 0) list.push(this.gapEntry('ORCH-STATE-722', item.seq, toSeq, count, item.gap.reason || 'dropped', lastTimeMs));
        continue;
      }
      const record = item.record as ShippedLogRecord__Output;
      if (!this.bucket.take()) {
        overBudget++;
        drop('node-rate');
        continue;
      }
      const entry = this.entryOf(record);
      if (!entry) {
        drop('malformed');
        this.logMalformed(record);
        continue;
      }
      lastTimeMs = entry.timeMs;
      list.push(entry);
    }
    if (overBudget > 0) list.push(this.notice('ORCH-REQ-264', { count: overBudget, reason: 'node-rate' }));
    const malformed = dropped.get('malformed') ?? 0;
    if (malformed > 0) list.push(this.notice('ORCH-REQ-265', { count: malformed, reason: 'malformed' }));
    return { list, dropped };
  }

  private gapEntry(code: 'ORCH-STATE-722' | 'ORCH-STATE-723', fromSeq: number, toSeq: number, count: number, reason: string, timeMs: number): NewLogEntry {
    const error = new ConclaveError(code);
    return {
      seq: toSeq, timeMs: timeMs || Date.now(), level: 'warn', prefix: 'ORCH', section: 'STATE', code, message: error.entry.message,
      node: this.o.nodeId, nodeName: this.o.nodeName, fields: { count, reason, fromSeq, toSeq }, gap: true,
    };
  }

  /** A shipped record as an entry, or undefined when it is malformed. Redacted again: the store is not the node's to fill with secrets. */
  private entryOf(record: ShippedLogRecord__Output): NewLogEntry | undefined {
    if (!NODE_PREFIXES.has(record.prefix) || !LEVELS.has(record.level) || !SECTION_SET.has(record.section)) return undefined;
    let fields: Record<string, unknown> = {};
    if (record.fieldsJson) {
      if (record.fieldsJson.length > MAX_SHIPPED_FIELDS_CHARS) {
        fields = { truncated: true, fieldsChars: record.fieldsJson.length };
      } else {
        try {
          const parsed: unknown = JSON.parse(record.fieldsJson);
          if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
          fields = redact(parsed) as Record<string, unknown>;
        } catch {
          return undefined;
        }
      }
    }
    const { jobId, node: _node, ...rest } = fields;
    const entry: NewLogEntry = {
      seq: Number(record.seq),
      timeMs: Number(record.timeMs),
      level: record.level as LogLevel,
      prefix: record.prefix as LogPrefix,
      section: record.section as Section,
      message: maskUrlCredentials(record.message.slice(0, MAX_SHIPPED_MESSAGE_CHARS)),
      node: this.o.nodeId,
      nodeName: this.o.nodeName,
      fields: rest,
    };
    if (record.code) entry.code = record.code.slice(0, 64);
    if (typeof jobId === 'string' && jobId !== '') entry.jobId = jobId.slice(0, 128);
    return entry;
  }

  private logMalformed(record: ShippedLogRecord__Output): void {
    if (this.malformedLogged) return;
    this.malformedLogged = true;
    this.o.logger.failure(new ConclaveError('ORCH-REQ-265', {
      detail: `seq ${String(record.seq)}: level ${JSON.stringify(record.level)}, prefix ${JSON.stringify(record.prefix)}, section ${JSON.stringify(record.section)}`,
      data: { node: this.o.nodeId },
    }), {}, 'warn');
  }
}
