import type { ServerResponse } from 'node:http';

/** How long a browser waits before it reconnects a dropped stream (the `retry:` field). */
export const SSE_RETRY_MS = 2_000;
/** A comment this often keeps proxies and idle timers from closing a quiet stream. */
export const SSE_KEEPALIVE_MS = 15_000;

/** One event in the wire format: every line of `data` on its own `data:` line. */
export function sseEvent(event: string, data: string): string {
  // CR, LF and CRLF all end a line in an event stream: split on each, so that no text in the
  // data (a log message with a bare CR) can start a field of its own.
  const lines = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`).join('');
  return `event: ${event}\n${lines}\n`;
}

export interface SseStreamOptions {
  /** Sent with the 200 beside the stream's own content type. */
  headers: Record<string, string>;
  /**
   * How long the socket's buffer may stay full (`writableNeedDrain`) before the stream is ended:
   * a browser that stopped reading (a sleeping laptop, a dead network) would otherwise hold one
   * of the bounded stream slots for as long as TCP keeps the connection. @default 30_000
   */
  stallTimeoutMs?: number;
  /** Told once, with how long the socket was blocked, just before a stalled stream is destroyed. */
  onStalled?: (blockedMs: number) => void;
}

/**
 * A server-sent event stream whose events each replace a whole panel, so that a slow reader
 * needs no queue: while the socket's buffer is full only the newest event of each name is
 * kept, and those are written once it drains. One that does not drain within
 * `stallTimeoutMs` is destroyed.
 */
export class SseStream {
  private readonly pending = new Map<string, string>();
  private waiting = false;
  private closed = false;
  private readonly keepalive: NodeJS.Timeout;
  private stallTimer: NodeJS.Timeout | undefined;
  private readonly stallTimeoutMs: number;

  constructor(private readonly res: ServerResponse, private readonly o: SseStreamOptions) {
    this.stallTimeoutMs = o.stallTimeoutMs ?? 30_000;
    res.writeHead(200, {
      ...o.headers,
      'content-type': 'text/event-stream; charset=utf-8',
      // Buffering proxies (nginx) would hold the events back.
      'x-accel-buffering': 'no',
    });
    res.on('drain', () => this.flush());
    this.keepalive = setInterval(() => {
      if (!this.waiting) this.write(': keepalive\n\n');
    }, SSE_KEEPALIVE_MS);
    this.keepalive.unref();
    res.on('close', () => this.dispose());
    this.write(`retry: ${SSE_RETRY_MS}\n\n`);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends `data` as event `name` now, or once the socket drains (replacing an older one of that name). */
  send(name: string, data: string): void {
    if (this.closed) return;
    if (this.waiting) {
      this.pending.delete(name);
      this.pending.set(name, data);
      return;
    }
    this.write(sseEvent(name, data));
  }

  end(): void {
    if (this.closed) return;
    this.dispose();
    this.res.end();
  }

  private write(chunk: string): void {
    if (this.closed) return;
    if (this.res.write(chunk) || this.waiting) return;
    this.waiting = true;
    const blockedAtMs = Date.now();
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      if (this.closed) return;
      // Emptied without a drain event: nothing else would flush the pending events.
      if (!this.res.writableNeedDrain) return this.flush();
      this.o.onStalled?.(Date.now() - blockedAtMs);
      // Not end(): that would queue behind the data the reader does not take.
      this.dispose();
      this.res.destroy();
    }, this.stallTimeoutMs);
    this.stallTimer.unref();
  }

  private flush(): void {
    this.waiting = false;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    const events = [...this.pending];
    this.pending.clear();
    for (const [name, data] of events) this.send(name, data);
  }

  private dispose(): void {
    this.closed = true;
    clearInterval(this.keepalive);
    clearTimeout(this.stallTimer);
    this.pending.clear();
  }
}
