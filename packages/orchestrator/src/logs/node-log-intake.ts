import { ConclaveError, LOG_LEVELS, SECTIONS, maskUrlCredentials, redact } from '@conclave/common';
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
  private chain: Promise<void> = Promise.resolve();
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

  receive(batch: LogBatch__Output): void {
    if (this.closed) return;
    this.spoolBytes = Number(batch.spoolBytes);
    this.droppedTotal = Number(batch.droppedTotal);
    this.o.metrics?.spoolBytes.set({ node: this.o.nodeName }, this.spoolBytes);
    this.chain = this.chain.then(() => this.store(batch)).catch((err: unknown) => {
      // Not acknowledged: the node sends the batch again. Logged once per streak, not per batch.
      if (!this.storeFailureLogged) this.o.logger.failure(err, { section: 'STATE', node: this.o.nodeId }, 'warn');
      this.storeFailureLogged = true;
      this.lastSeq = undefined;
    });
  }

  /** What the node said in its last batch about its spool and its drops (`nodes get`). */
  figures(): LogShippingFigures {
    return { spoolBytes: this.spoolBytes, droppedTotal: this.droppedTotal };
  }

  /** The session ended: batches still waiting are not stored (the node sends them again). */
  close(): void {
    this.closed = true;
    this.o.metrics?.spoolBytes.remove({ node: this.o.nodeName });
  }

  /** Resolves when every batch received so far is handled (tests). */
  idle(): Promise<void> {
    return this.chain;
  }

  private async store(batch: LogBatch__Output): Promise<void> {
    if (this.closed) return;
    this.lastSeq ??= await this.o.store.lastNodeSeq(this.o.nodeId);
    const entries = this.entriesOf(batch, this.lastSeq);
    const upToSeq = Math.max(this.lastSeq, ...batch.records.map((r) => Number(r.seq)), ...batch.gaps.map((g) => Number(g.toSeq)));
    const stored = await this.o.store.append(entries.list, { nodeId: this.o.nodeId, upToSeq });
    this.storeFailureLogged = false;
    this.lastSeq = upToSeq;
    this.o.metrics?.recordsReceived(entries.list, stored);
    for (const [reason, count] of entries.dropped) this.o.metrics?.dropped.inc({ reason }, count);
    if (!this.closed) this.o.ack(upToSeq);
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
    if (overBudget > 0) {
      const error = new ConclaveError('ORCH-REQ-264');
      list.push({
        timeMs: Date.now(), level: 'warn', prefix: 'ORCH', section: 'REQ', code: error.code, message: error.entry.message,
        node: this.o.nodeId, nodeName: this.o.nodeName, fields: { count: overBudget, reason: 'node-rate' }, gap: true,
      });
    }
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
