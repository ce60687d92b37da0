import { setTimeout as sleep } from 'node:timers/promises';
import type { LogFilter, LogReader, StoredLogEntry } from '../logs/log-entry.js';
import { logsFragment, panelErrorOf, type LogTailStatus } from './fragments.js';
import type { SafeHtml } from './html.js';

export interface LogTailOptions {
  /** Absent: the panel says that no log store is kept. */
  reader: LogReader | undefined;
  filter: LogFilter;
  /** Called with the re-rendered panel, at most once per `renderEveryMs`. */
  onRender: (panel: SafeHtml) => void;
  /** Entries kept and shown. @default 200 */
  keep?: number;
  /** How long after a failed follow it starts again, from the last entry it had. @default 2_000 */
  retryMs?: number;
  /** @default 250 */
  renderEveryMs?: number;
}

/**
 * One open page's live tail: follows the store with the page's filters and renders the newest
 * `keep` entries as a whole panel, so that the page needs no script to trim or order them.
 */
export class LogTail {
  private readonly entries: StoredLogEntry[] = [];
  private readonly abort = new AbortController();
  private status: LogTailStatus;
  private renderTimer: NodeJS.Timeout | undefined;
  private readonly keep: number;
  private readonly retryMs: number;
  private readonly renderEveryMs: number;

  constructor(private readonly o: LogTailOptions) {
    this.keep = o.keep ?? 200;
    this.retryMs = o.retryMs ?? 2_000;
    this.renderEveryMs = o.renderEveryMs ?? 250;
    this.status = o.reader ? { kind: 'live' } : { kind: 'not-stored' };
  }

  /** Renders the panel at once (empty until records come), then follows. */
  start(): void {
    this.o.onRender(this.render());
    const reader = this.o.reader;
    if (reader) void this.follow(reader);
  }

  close(): void {
    this.abort.abort();
    clearTimeout(this.renderTimer);
  }

  render(): SafeHtml {
    return logsFragment(this.entries, this.status);
  }

  private async follow(reader: LogReader): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const last = this.entries[this.entries.length - 1];
      const filter: LogFilter = { ...this.o.filter, ...(last ? { afterId: last.id } : { limit: this.keep }) };
      try {
        for await (const batch of reader.follow(filter, signal)) {
          if (signal.aborted) return;
          this.add(batch);
        }
      } catch (err) {
        if (signal.aborted) return;
        this.status = { kind: 'error', error: panelErrorOf(err) };
        this.scheduleRender();
      }
      // A follow that ended or failed starts again from the last entry shown.
      await sleep(this.retryMs, undefined, { signal }).catch(() => undefined);
    }
  }

  private add(batch: readonly StoredLogEntry[]): void {
    this.status = { kind: 'live' };
    this.entries.push(...batch);
    if (this.entries.length > this.keep) this.entries.splice(0, this.entries.length - this.keep);
    this.scheduleRender();
  }

  private scheduleRender(): void {
    if (this.renderTimer !== undefined || this.abort.signal.aborted) return;
    this.renderTimer = setTimeout(() => {
      this.renderTimer = undefined;
      if (!this.abort.signal.aborted) this.o.onRender(this.render());
    }, this.renderEveryMs);
  }
}
