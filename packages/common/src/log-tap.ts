import type { LogRecord } from './log-format.js';
import type { LogLevel } from './logger.js';

/** What a tap hands its reader: the record and whether lines were lost before it. */
export type LogRecordReader = (record: LogRecord) => void;

/** Records a tap keeps before anything reads it (start-up lines, before the shipper exists). */
export const LOG_TAP_EARLY_LIMIT = 1_000;

/**
 * A second output of a logger, at its own level, for records rather than text: the node agent
 * ships what it reads from here, the orchestrator stores it. A logger is made before the part
 * that reads its records (the agent's shipper needs the node id and data dir), so the tap keeps
 * the first LOG_TAP_EARLY_LIMIT records until a reader attaches, and counts what it had to drop.
 */
export class LogTap {
  private reader: LogRecordReader | undefined;
  private early: LogRecord[] = [];
  private earlyDropped = 0;

  /** @param level the level records are tapped at, independent of the logger's own outputs. */
  constructor(readonly level: LogLevel) {}

  /** Called by the logger for every record at or above `level`, synchronously. */
  write(record: LogRecord): void {
    if (this.reader) {
      this.reader(record);
      return;
    }
    if (this.early.length < LOG_TAP_EARLY_LIMIT) this.early.push(record);
    else this.earlyDropped++;
  }

  /**
   * Attaches the one reader and hands it what was kept so far; returns how many early records
   * did not fit (the reader reports them as a gap).
   */
  attach(reader: LogRecordReader): { earlyDropped: number } {
    this.reader = reader;
    const early = this.early;
    const earlyDropped = this.earlyDropped;
    this.early = [];
    this.earlyDropped = 0;
    for (const record of early) reader(record);
    return { earlyDropped };
  }

  /** Stops reading: later records are kept as before a reader attached. */
  detach(reader: LogRecordReader): void {
    if (this.reader === reader) this.reader = undefined;
  }
}
