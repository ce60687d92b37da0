import { Counter, Gauge, Registry } from 'prom-client';
import type { NewLogEntry } from './log-store.js';

/** Gap reasons counted by the intake itself (or not drops at all): a gap record of theirs is not counted again. */
const COUNTED_WHERE_DROPPED: ReadonlySet<string> = new Set(['node-rate', 'malformed', 'trimmed', 'restarted', 'buffer-full']);

/** The fleet log store's metrics, in a registry of their own (merged into /metrics). */
export class LogMetrics {
  readonly registry = new Registry();
  /** Records stored, by prefix (gap records not counted). */
  readonly stored = new Counter({
    name: 'conclave_log_records_stored_total', help: 'Log records stored in the fleet log store, by prefix.', labelNames: ['prefix'], registers: [this.registry],
  });
  /** Records lost on the way, by reason: on nodes (spool-full, rate), at the orchestrator (node-rate, malformed, buffer-full). */
  readonly dropped = new Counter({
    name: 'conclave_log_records_dropped_total', help: 'Log records dropped before they were stored, by reason.', labelNames: ['reason'], registers: [this.registry],
  });
  /** Each node's spool on disk, from its last batch. */
  readonly spoolBytes = new Gauge({
    name: 'conclave_node_log_spool_bytes', help: "Bytes in a node's log spool (records not yet stored here), from its last batch.", labelNames: ['node'], registers: [this.registry],
  });

  /** Counts what one append stored; the gaps' counts go to `dropped` under their reasons. */
  recordsReceived(entries: readonly NewLogEntry[], storedCount: number): void {
    if (storedCount === 0) return;
    for (const entry of entries) {
      if (entry.gap) {
        const count = Number(entry.fields.count);
        const reason = typeof entry.fields.reason === 'string' ? entry.fields.reason : 'unknown';
        // The orchestrator's own drops are counted where they happen; a trim is not a drop.
        if (count > 0 && !COUNTED_WHERE_DROPPED.has(reason)) this.dropped.inc({ reason }, count);
        continue;
      }
      this.stored.inc({ prefix: entry.prefix });
    }
  }
}
