import { ConclaveError } from '@conclave/common';
import type { LogRecord, LogRecordReader, LogTap } from '@conclave/common';
import type { LogMetrics } from './log-metrics.js';
import type { LogStore, NewLogEntry } from './log-store.js';

/** How often the orchestrator's own records go to the store: well inside the 1 s a tail may lag. */
export const ORCHESTRATOR_LOG_FLUSH_MS = 50;
/**
 * Records kept while Redis does not take them; past this the oldest are dropped and counted
 * (one gap record says how many). The local log files keep them all.
 */
export const ORCHESTRATOR_LOG_BUFFER = 20_000;

/** A record of the orchestrator's own logger as a store entry. */
export function entryOfRecord(record: LogRecord): NewLogEntry {
  const { jobId, ...fields } = record.meta;
  const entry: NewLogEntry = {
    timeMs: record.time.getTime(), level: record.level, prefix: record.prefix, section: record.section, message: record.message, fields,
  };
  if (record.code !== undefined) entry.code = record.code;
  if (typeof jobId === 'string' && jobId !== '') entry.jobId = jobId;
  return entry;
}

/**
 * Moves the orchestrator's own records (ORCH-, and its CHAT-) from its logger's tap into the
 * store, in batches. It never logs through that logger itself: a failing store would log
 * about itself for ever.
 */
export class OrchestratorLogSink {
  private buffer: NewLogEntry[] = [];
  private dropped = 0;
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly reader: LogRecordReader = (record) => this.add(record);

  constructor(private readonly tap: LogTap, private readonly store: LogStore, private readonly metrics?: LogMetrics) {
    const { earlyDropped } = tap.attach(this.reader);
    this.dropped += earlyDropped;
    this.timer = setInterval(() => void this.flush(), ORCHESTRATOR_LOG_FLUSH_MS);
    this.timer.unref();
  }

  /** Stops reading and stores what is buffered (bounded by the caller's shutdown step). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.tap.detach(this.reader);
    await this.flush();
  }

  private add(record: LogRecord): void {
    if (this.buffer.length >= ORCHESTRATOR_LOG_BUFFER) {
      this.buffer.shift();
      this.dropped++;
      this.metrics?.dropped.inc({ reason: 'buffer-full' });
    }
    this.buffer.push(entryOfRecord(record));
  }

  /** One flush at a time; a failed one keeps its records for the next. */
  flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    if (this.buffer.length === 0 && this.dropped === 0) return;
    const batch = this.buffer;
    const dropped = this.dropped;
    this.buffer = [];
    this.dropped = 0;
    const entries = dropped > 0 ? [this.gapEntry(dropped, batch[0]?.timeMs ?? Date.now()), ...batch] : batch;
    try {
      const stored = await this.store.append(entries);
      this.metrics?.recordsReceived(batch, stored);
    } catch {
      // Redis is away: the records go back in front of what came meanwhile, within the bound.
      const kept = [...batch, ...this.buffer];
      const over = Math.max(0, kept.length - ORCHESTRATOR_LOG_BUFFER);
      this.buffer = kept.slice(over);
      this.dropped += dropped + over;
      if (over > 0) this.metrics?.dropped.inc({ reason: 'buffer-full' }, over);
    }
  }

  private gapEntry(count: number, timeMs: number): NewLogEntry {
    const error = new ConclaveError('ORCH-STATE-720');
    return {
      timeMs, level: 'warn', prefix: 'ORCH', section: 'STATE', code: error.code, message: error.entry.message,
      fields: { count, reason: 'buffer-full' }, gap: true,
    };
  }
}
