import type { Logger } from '@conclave/common';
import type { ChatContext, ChatDelivery, ChatMessage } from '@conclave/protocol';
import type { ChatSink, ChatSubscription } from './chat-api.js';

/** A message's encoded size, near enough: its text in UTF-8 and room for the other fields. */
export function messageBytes(message: ChatMessage): number {
  return Buffer.byteLength(message.text ?? '', 'utf8') + 256;
}

/** The first messages of `messages` whose size stays within a delivery's (at least one). */
export function withinDeliveryBytes(messages: readonly ChatMessage[]): ChatMessage[] {
  let bytes = 0;
  let count = 0;
  for (const message of messages) {
    bytes += messageBytes(message);
    if (count > 0 && bytes > MAX_DELIVERY_TEXT_BYTES) break;
    count += 1;
  }
  return messages.slice(0, count);
}

/** What a feed reads when a subscriber is behind what it holds in memory. */
export interface FeedSource {
  /** Up to `limit` messages after `afterSeq`, oldest first. */
  range(room: string, afterSeq: number, limit: number): Promise<ChatMessage[]>;
  /** The room's context, its head_seq the last message it stands for. */
  snapshot(room: string): Promise<ChatContext>;
}

/** Why a subscriber gets a snapshot instead of the next message. */
export type ResyncReason = 'trimmed' | 'regressed' | 'epoch';

/** Messages a feed keeps in memory: subscribers within this of the head never touch Redis. */
export const RECENT_MESSAGES = 4_096;
/** The most messages one delivery carries. */
export const MAX_DELIVERY_MESSAGES = 256;
/** And the most bytes: well under a sealed frame (4 MiB), whatever the message size limit. */
export const MAX_DELIVERY_TEXT_BYTES = 1024 * 1024;
/** Messages delivered and not acknowledged, per subscription that acknowledges. */
export const ACK_WINDOW = 1_024;
/** How long a hole in the published seqs may stay before the feed reads it from Redis. */
export const GAP_FILL_DELAY_MS = 50;
/** After a failed read (Redis away), a behind subscriber tries again after this. */
const RETRY_READ_MS = 500;

/**
 * One room's live fan-out on this orchestrator, the only writer of its log: every message the
 * orchestrator appends is published here in seq order and handed to each subscriber that is
 * caught up, from memory, in the same turn. A subscriber that is behind (it resumed from an older
 * seq, its sink pushed back, or it stopped acknowledging) reads pages from Redis until it is
 * caught up again, so a slow member costs a cursor, never a buffer.
 */
export class RoomFeed {
  private readonly subscriptions = new Set<FeedSubscription>();
  /** Consecutive messages, `recent[0].seq === recentStart`, the last one `lastSeq`. */
  private recent: ChatMessage[] = [];
  private recentStart: number;
  private lastSeqValue: number;
  /** Published ahead of a hole (a reply that overtook another), until the hole is filled. */
  private readonly ahead = new Map<number, ChatMessage>();
  private gapTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly room: string,
    private epochValue: string,
    headSeq: number,
    private readonly source: FeedSource,
    private readonly logger: Logger,
    /** A seq was reused for another message: Redis lost its tail. */
    private readonly onRegression: (feed: RoomFeed, seq: number) => void,
  ) {
    this.lastSeqValue = headSeq;
    this.recentStart = headSeq + 1;
  }

  get epoch(): string {
    return this.epochValue;
  }

  get lastSeq(): number {
    return this.lastSeqValue;
  }

  get size(): number {
    return this.subscriptions.size;
  }

  /**
   * A message this orchestrator appended. One older than the head is the head read racing an
   * append (ignored) unless the feed holds another message at that seq: then the seq was
   * reused, and every subscriber resynchronises.
   */
  publish(message: ChatMessage, epoch: string): void {
    const seq = Number(message.seq);
    if (epoch && epoch !== this.epochValue) {
      // The room was recreated (Redis lost it) or renewed: nothing of the old log applies.
      this.logger.info('STATE', 'chat room has a new epoch: members resynchronise', { room: this.room, seq, code: 'CHAT-STATE-703', epoch });
      this.reset(epoch, seq - 1, 'epoch');
    }
    if (seq <= this.lastSeqValue) {
      const known = this.at(seq);
      if (known && (known.atMs !== message.atMs || known.sender !== message.sender || known.text !== message.text)) this.onRegression(this, seq);
      return;
    }
    if (seq !== this.lastSeqValue + 1) {
      this.ahead.set(seq, message);
      this.scheduleGapFill();
      return;
    }
    this.push(message);
    this.wakeAll();
  }

  /** The log was recreated or regressed: memory is dropped and every subscriber gets a snapshot. */
  reset(epoch: string, headSeq: number, reason: ResyncReason): void {
    this.epochValue = epoch;
    this.recent = [];
    this.ahead.clear();
    this.lastSeqValue = headSeq;
    this.recentStart = headSeq + 1;
    for (const subscription of this.subscriptions) subscription.resync(reason);
  }

  add(subscription: FeedSubscription): void {
    this.subscriptions.add(subscription);
  }

  remove(subscription: FeedSubscription): void {
    this.subscriptions.delete(subscription);
  }

  closeAll(): void {
    clearTimeout(this.gapTimer);
    for (const subscription of [...this.subscriptions]) subscription.close();
  }

  /**
   * Consecutive messages from `fromSeq`, if memory holds `fromSeq`: at most `maxMessages`, none
   * after `untilSeq`, and no more text than a delivery carries.
   */
  slice(fromSeq: number, maxMessages: number, untilSeq: number): ChatMessage[] | undefined {
    if (fromSeq < this.recentStart || fromSeq > this.lastSeqValue) return undefined;
    const out: ChatMessage[] = [];
    let bytes = 0;
    for (let seq = fromSeq; seq <= Math.min(this.lastSeqValue, untilSeq) && out.length < maxMessages; seq += 1) {
      const message = this.recent[seq - this.recentStart] as ChatMessage;
      bytes += messageBytes(message);
      if (out.length > 0 && bytes > MAX_DELIVERY_TEXT_BYTES) break;
      out.push(message);
    }
    return out;
  }

  read(afterSeq: number, limit: number): Promise<ChatMessage[]> {
    return this.source.range(this.room, afterSeq, limit);
  }

  snapshot(): Promise<ChatContext> {
    return this.source.snapshot(this.room);
  }

  private at(seq: number): ChatMessage | undefined {
    return seq >= this.recentStart ? this.recent[seq - this.recentStart] : undefined;
  }

  private push(message: ChatMessage): void {
    this.recent.push(message);
    this.lastSeqValue = Number(message.seq);
    for (let next = this.ahead.get(this.lastSeqValue + 1); next; next = this.ahead.get(this.lastSeqValue + 1)) {
      this.ahead.delete(this.lastSeqValue + 1);
      this.recent.push(next);
      this.lastSeqValue += 1;
    }
    // Dropped in halves, so that trimming costs O(1) a message.
    if (this.recent.length > 2 * RECENT_MESSAGES) {
      const drop = this.recent.length - RECENT_MESSAGES;
      this.recent = this.recent.slice(drop);
      this.recentStart += drop;
    }
  }

  private wakeAll(): void {
    for (const subscription of this.subscriptions) subscription.wake();
  }

  /** A hole that stays is read from Redis; what Redis no longer has is skipped (subscribers read it, or resync). */
  private scheduleGapFill(): void {
    if (this.gapTimer) return;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = undefined;
      if (this.ahead.size === 0) return;
      const firstAhead = Math.min(...this.ahead.keys());
      const from = this.lastSeqValue;
      this.source.range(this.room, from, firstAhead - from - 1).then(
        (missing) => {
          if (this.lastSeqValue !== from) return this.scheduleGapFill();
          for (const message of missing) {
            if (Number(message.seq) === this.lastSeqValue + 1) this.push(message);
          }
          if (this.ahead.size > 0 && !this.ahead.has(this.lastSeqValue + 1)) {
            // Gone from Redis too: memory restarts at the first message it has.
            const next = Math.min(...this.ahead.keys());
            this.recent = [];
            this.recentStart = next;
            this.lastSeqValue = next - 1;
          }
          const next = this.ahead.get(this.lastSeqValue + 1);
          if (next) {
            this.ahead.delete(this.lastSeqValue + 1);
            this.push(next);
          }
          this.wakeAll();
          return undefined;
        },
        (err: unknown) => {
          this.logger.debug('STATE', 'chat gap fill failed; trying again', { room: this.room, seq: from + 1, err });
          this.scheduleGapFill();
        },
      ).catch((err: unknown) => this.logger.failure(err, { room: this.room, seq: from + 1 }, 'warn'));
    }, GAP_FILL_DELAY_MS);
  }
}

export interface FeedSubscriptionOptions {
  /** Last seq the member has; delivery starts after it. */
  cursor: number;
  /** Set when the member's resume point cannot be served: it gets a snapshot first. */
  resync?: ResyncReason;
  follow: boolean;
  acks: boolean;
  /** The head when it subscribed: `caughtUp` resolves once delivered up to it. */
  target: number;
  /** Called once, when the subscription ends (closed by its owner or its feed). */
  onClose: (subscription: FeedSubscription) => void;
}

/**
 * One member's delivery from one room: a cursor, not a queue. `pump` sends what comes next —
 * from the feed's memory when it holds it, else a page from Redis — while the sink takes it and,
 * for members that acknowledge, while fewer than ACK_WINDOW messages wait for their ack.
 */
export class FeedSubscription implements ChatSubscription {
  readonly caughtUp: Promise<void>;
  readonly closed: Promise<void>;
  private resolveCaughtUp!: () => void;
  private resolveClosed!: () => void;
  private cursor: number;
  private acked: number;
  private pendingResync: ResyncReason | undefined;
  /** A Redis read or a snapshot is under way: it pumps again when it returns. */
  private reading = false;
  private waitingForSink = false;
  private isClosed = false;
  private caughtUpDone = false;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly feed: RoomFeed,
    private readonly sink: ChatSink,
    private readonly o: FeedSubscriptionOptions,
    private readonly logger: Logger,
  ) {
    this.caughtUp = new Promise((resolve) => {
      this.resolveCaughtUp = resolve;
    });
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.cursor = o.cursor;
    this.acked = o.cursor;
    this.pendingResync = o.resync;
  }

  get room(): string {
    return this.feed.room;
  }

  ack(seq: number): void {
    if (!Number.isFinite(seq) || seq <= this.acked) return;
    this.acked = Math.min(seq, this.cursor);
    this.wake();
  }

  resync(reason: ResyncReason): void {
    this.pendingResync = reason;
    this.wake();
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    clearTimeout(this.retryTimer);
    this.feed.remove(this);
    // A follower whose subscription ends is not left waiting for a head it will never reach.
    this.resolveCaughtUp();
    this.resolveClosed();
    this.o.onClose(this);
  }

  /** Delivers whatever is due now; called on every publish, ack, and when the sink drains. */
  wake(): void {
    if (this.isClosed || this.reading || this.waitingForSink) return;
    for (;;) {
      if (this.pendingResync) {
        this.sendSnapshot(this.pendingResync);
        return;
      }
      const until = this.o.follow ? Number.MAX_SAFE_INTEGER : this.o.target;
      if (this.cursor >= Math.min(this.feed.lastSeq, until)) {
        this.checkCaughtUp();
        return;
      }
      const room = this.o.acks ? ACK_WINDOW - (this.cursor - this.acked) : MAX_DELIVERY_MESSAGES;
      if (room <= 0) return;
      const limit = Math.min(room, MAX_DELIVERY_MESSAGES);
      const batch = this.feed.slice(this.cursor + 1, limit, until);
      if (!batch) {
        this.readFromRedis(limit, until);
        return;
      }
      if (!this.deliver(batch)) return;
    }
  }

  private deliver(messages: ChatMessage[], extra: Partial<ChatDelivery> = {}): boolean {
    let more: boolean;
    try {
      more = this.sink.deliver({ room: this.feed.room, epoch: this.feed.epoch, messages, ...extra });
    } catch (err) {
      // A delivery that cannot be sent (it could not be sealed) ends this subscription, not the
      // process; the member subscribes again and resumes from its cursor.
      this.logger.failure(err, { room: this.feed.room, seq: this.cursor + 1 }, 'warn');
      this.close();
      return false;
    }
    const last = messages[messages.length - 1];
    if (last) this.cursor = Number(last.seq);
    this.checkCaughtUp();
    if (!more) {
      this.waitingForSink = true;
      void this.sink.writable().then(() => {
        this.waitingForSink = false;
        this.wake();
      });
    }
    return more;
  }

  private checkCaughtUp(): void {
    if (this.caughtUpDone || this.cursor < this.o.target) return;
    this.caughtUpDone = true;
    this.resolveCaughtUp();
  }

  private readFromRedis(limit: number, until: number): void {
    this.reading = true;
    const from = this.cursor + 1;
    this.feed.read(this.cursor, limit).then(
      (messages) => {
        this.reading = false;
        if (this.isClosed || this.cursor + 1 !== from || this.pendingResync) return this.wake();
        const first = messages[0];
        if (!first) {
          // The feed knows of messages Redis does not have: Redis lost its tail.
          this.pendingResync = 'regressed';
        } else if (Number(first.seq) > from) {
          // Trimmed while this member was away (or behind).
          this.pendingResync = 'trimmed';
        } else if (this.deliver(withinDeliveryBytes(messages.filter((m) => Number(m.seq) <= until)))) {
          // The next page, or the feed's memory.
        } else {
          return undefined;
        }
        return this.wake();
      },
      (err: unknown) => {
        this.reading = false;
        this.logger.debug('STATE', 'chat read failed; trying again', { room: this.feed.room, seq: from, err });
        this.retryTimer = setTimeout(() => this.wake(), RETRY_READ_MS);
      },
    ).catch((err: unknown) => this.failed(err));
  }

  private sendSnapshot(reason: ResyncReason): void {
    this.reading = true;
    this.feed.snapshot().then(
      (snapshot) => {
        this.reading = false;
        if (this.isClosed) return;
        // A reason that came while the snapshot was read is answered by this snapshot.
        this.pendingResync = undefined;
        const headSeq = Number(snapshot.headSeq);
        this.logger.info('STATE', 'chat member resynchronised from the room context', {
          room: this.feed.room, seq: headSeq, reason, code: 'CHAT-STATE-703', from: this.cursor,
        });
        // The snapshot stands for everything up to its head: delivery goes on after it.
        this.cursor = headSeq;
        this.acked = headSeq;
        if (this.deliver([], { snapshot, resyncReason: reason, code: 'CHAT-STATE-703' })) this.wake();
      },
      (err: unknown) => {
        this.reading = false;
        this.logger.debug('STATE', 'chat snapshot failed; trying again', { room: this.feed.room, err });
        this.retryTimer = setTimeout(() => this.wake(), RETRY_READ_MS);
      },
    ).catch((err: unknown) => this.failed(err));
  }

  /** Something unexpected in a delivery step: logged, and the subscription ends (never an unhandled rejection). */
  private failed(err: unknown): void {
    this.reading = false;
    this.logger.failure(err, { room: this.feed.room, seq: this.cursor }, 'warn');
    this.close();
  }
}
