import { ConclaveError, backoffDelayMs, sleep } from '@conclave/common';
import type { ChatDelivery__Output, ChatMessage__Output } from '@conclave/protocol';
import type { ChatClient, RoomEvent } from './chat-client.js';
import { isRetryable } from './chat-error.js';

/** Messages asked for per history request. */
export const TAIL_PAGE = 256;
/**
 * Live messages held while a tail reads history; past this many they are dropped and read from
 * history instead (they are in the log), so a slow tail costs no unbounded memory.
 */
export const TAIL_BUFFER_MAX = 4096;

/** Where a tail's output goes: a socket connection. */
export interface TailSink {
  message(message: ChatMessage__Output): void;
  /** A resynchronisation: the snapshot's messages follow, then the messages after its head. */
  resync(delivery: ChatDelivery__Output): void;
  /** False while the reader is behind: live messages then wait in the log, not in memory. */
  writable(): boolean;
  /** Resolves when the reader has caught up (or gone). */
  drained(): Promise<void>;
}

export type TailSource = Pick<ChatClient, 'history' | 'onRoom' | 'follows'>;

export interface TailOptions {
  room: string;
  /** First seq to show. @default 1: from the start of what the log holds */
  from?: number;
  /** Keep showing new messages until `stop()`; otherwise end at the head. */
  follow: boolean;
}

type Mode = 'history' | 'live' | 'stopped';

/**
 * One `tail` of a room: its history through `history` requests from `from`, then, when following,
 * the live messages of the agent's own subscription, each seq once and none skipped. Live
 * messages that arrive while history is read are held and joined where history meets them; if
 * the reader falls behind, or a gap shows, the tail goes back to reading history from where it
 * is. A resynchronisation (the log was trimmed, lost its tail, or was recreated) is passed on.
 */
export class ChatTail {
  private nextSeq = 1;
  private mode: Mode = 'history';
  private buffer: RoomEvent[] = [];
  private buffered = 0;
  private unsubscribe: () => void = () => undefined;
  private catchingUp: Promise<void> | undefined;
  private failure: ((err: unknown) => void) | undefined;
  private stopped: (() => void) | undefined;

  constructor(private readonly source: TailSource, private readonly o: TailOptions, private readonly sink: TailSink) {}

  /** Resolves when the tail ends (at the head, or after `stop()` when following); rejects on a failure. */
  async run(): Promise<void> {
    const { room, follow } = this.o;
    if (follow && !this.source.follows(room)) {
      throw new ConclaveError('CHAT-AUTH-501', { detail: `this node does not follow ${JSON.stringify(room)}: join it first`, data: { room } });
    }
    const done = new Promise<void>((resolve, reject) => {
      this.stopped = resolve;
      this.failure = reject;
    });
    if (follow) this.unsubscribe = this.source.onRoom(room, (event) => this.live(event));
    try {
      this.nextSeq = Math.max(1, this.o.from ?? 1);
      await this.catchUp();
      if (!follow) return;
      await done;
    } finally {
      this.stop();
    }
  }

  stop(): void {
    this.end();
  }

  private end(err?: unknown): void {
    if (this.mode === 'stopped') return;
    this.mode = 'stopped';
    this.unsubscribe();
    this.buffer = [];
    if (err === undefined) this.stopped?.();
    else this.failure?.(err);
  }

  /** Reads history from nextSeq until it meets the live messages (or the head); then live. */
  private catchUp(): Promise<void> {
    this.catchingUp ??= this.readHistory().finally(() => {
      this.catchingUp = undefined;
    });
    return this.catchingUp;
  }

  private async readHistory(): Promise<void> {
    this.mode = 'history';
    let attempt = 0;
    let emptyWithGap = 0;
    // A page shorter than a full one seen before is the head (at the time of that read): a
    // one-shot tail ends there, so posts that keep coming cannot keep it running.
    let fullPage = 0;
    while (this.isRunning()) {
      if (!this.sink.writable()) await this.sink.drained();
      if (!this.isRunning()) return;
      const first = this.buffer[0];
      if (this.o.follow && first && firstSeqOf(first) <= this.nextSeq && this.joinBuffer()) return;
      let page: ChatDelivery__Output;
      try {
        page = await this.source.history(this.o.room, this.nextSeq - 1, TAIL_PAGE);
        attempt = 0;
      } catch (err) {
        // A follower outlives an outage of the orchestrator; a one-shot tail reports it.
        if (!this.o.follow || !isRetryable(err)) throw err;
        attempt += 1;
        await sleep(backoffDelayMs(attempt, { baseMs: 250, capMs: 5_000 }));
        continue;
      }
      if (!this.isRunning()) return;
      this.deliver(page);
      if (!this.o.follow && !page.snapshot && page.messages.length > 0 && page.messages.length < fullPage) return;
      fullPage = Math.max(fullPage, page.messages.length);
      if (page.messages.length === 0 && !page.snapshot) {
        // At the head: what came live since joins here (nothing missing: the log had nothing newer).
        if (!this.o.follow || this.joinBuffer()) return;
        // Live messages start past the head history saw: it raced them, so look once more; a
        // second time means the log itself has the gap, and the tail goes on from the live ones.
        emptyWithGap += 1;
        if (emptyWithGap >= 2 && this.buffer[0]) {
          this.nextSeq = firstSeqOf(this.buffer[0]);
          if (this.joinBuffer()) return;
        }
      } else {
        emptyWithGap = 0;
      }
    }
  }

  private isRunning(): boolean {
    return this.mode !== 'stopped';
  }

  /** Emits the held live messages from nextSeq; false (still in history mode) when they start after a gap. */
  private joinBuffer(): boolean {
    const held = this.buffer;
    this.buffer = [];
    this.buffered = 0;
    this.mode = 'live';
    for (let i = 0; i < held.length; i += 1) {
      if (!this.apply(held[i]!)) {
        this.mode = 'history';
        this.buffer = held.slice(i);
        this.buffered = this.buffer.reduce((n, e) => n + e.messages.length, 0);
        return false;
      }
    }
    return true;
  }

  private live(event: RoomEvent): void {
    if (this.mode === 'stopped') return;
    if (this.mode === 'history') {
      this.hold(event);
      return;
    }
    if (!this.apply(event) || !this.sink.writable()) {
      // A gap, or a reader behind: read the rest from history, where it waits without costing memory.
      if (this.mode === 'live') this.mode = 'history';
      this.catchUp().catch((err: unknown) => this.fail(err));
    }
  }

  private hold(event: RoomEvent): void {
    if (event.resync) {
      // What was held before a resynchronisation belongs to a log that is gone.
      this.buffer = [];
      this.buffered = 0;
    } else if (this.buffered + event.messages.length > TAIL_BUFFER_MAX) {
      this.buffer = [];
      this.buffered = 0;
      return;
    }
    this.buffer.push(event);
    this.buffered += event.messages.length;
  }

  /** Applies one live event; false when it starts after a gap (it is then held, unapplied). */
  private apply(event: RoomEvent): boolean {
    if (event.resync) {
      this.deliver({ ...event.resync, messages: event.messages });
      return true;
    }
    const first = event.messages[0];
    if (first && Number(first.seq) > this.nextSeq) {
      this.hold(event);
      return false;
    }
    for (const message of event.messages) this.emit(message);
    return true;
  }

  /** A history page or a resynchronising delivery: the snapshot (if any) restarts the count. */
  private deliver(delivery: ChatDelivery__Output): void {
    if (delivery.snapshot) {
      this.sink.resync(delivery);
      for (const message of delivery.snapshot.messages) this.sink.message(message);
      this.nextSeq = Number(delivery.snapshot.headSeq) + 1;
    }
    for (const message of delivery.messages) this.emit(message);
  }

  /** Each seq once, in order. */
  private emit(message: ChatMessage__Output): void {
    const seq = Number(message.seq);
    if (seq < this.nextSeq) return;
    this.sink.message(message);
    this.nextSeq = seq + 1;
  }

  private fail(err: unknown): void {
    this.end(err);
  }
}

function firstSeqOf(event: RoomEvent): number {
  return event.resync ? 0 : Number(event.messages[0]?.seq ?? Number.MAX_SAFE_INTEGER);
}
