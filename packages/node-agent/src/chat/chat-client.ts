import { randomUUID } from 'node:crypto';
import { ConclaveError, backoffDelayMs, type Logger } from '@conclave/common';
import { CHAT_FLEET_ROOM, CHAT_ROOM_NAME_PATTERN, CHAT_TOKEN_PATTERN } from '@conclave/protocol';
import type {
  ChatClaimResult__Output, ChatContext__Output, ChatDelivery__Output, ChatMessage__Output, ChatPosted__Output, ChatReleased__Output,
  ChatReplies__Output, ChatReply__Output, ChatRoom__Output,
} from '@conclave/protocol';
import { ChatReplyError } from './chat-error.js';
import type { ChatCursor, ChatCursors } from './chat-cursors.js';
import type { ChatOutbox, OutboxEntry } from './chat-outbox.js';
import { RequestChannel, noReplyReason, type ChatOp, type ChatTransport } from './request-channel.js';

/** Every node is a member of this room from its registration. */
export const FLEET_ROOM = CHAT_FLEET_ROOM;
/** Posts in flight at most; the rest of the session's window stays free for claims, joins and the like. */
export const CHAT_MAX_POSTS_IN_FLIGHT = 512;
/** First delay before a post or subscription that failed retryably is tried again; doubles up to the cap. */
export const CHAT_RETRY_BASE_MS = 250;
export const CHAT_RETRY_CAP_MS = 5_000;


export interface ChatClientOptions {
  transport: ChatTransport;
  outbox: ChatOutbox;
  cursors: ChatCursors;
  /** The agent's CHAT-prefixed logger. */
  logger: Logger;
  /** How long a request, and a caller of `post` while connected, waits for the answer. @default CHAT_REQUEST_TIMEOUT_MS */
  requestTimeoutMs?: number;
  /** @default CHAT_MAX_IN_FLIGHT */
  maxInFlight?: number;
  /** @default CHAT_MAX_POSTS_IN_FLIGHT */
  maxPostsInFlight?: number;
  /** @default CHAT_RETRY_BASE_MS */
  retryBaseMs?: number;
}

export interface PostInput {
  room: string;
  text: string;
  /** Generated (a UUID) when absent, before anything is sent. */
  clientMsgId?: string;
  resource?: string;
  fence?: number;
}

/** Posted (the orchestrator's answer), or queued: on disk, sent when the orchestrator is reachable. */
export type PostOutcome =
  | { queued: false; posted: ChatPosted__Output }
  | { queued: true; room: string; clientMsgId: string };

/** What a room's listeners get for each delivery applied: a resynchronisation first when there was one. */
export interface RoomEvent {
  room: string;
  epoch: string;
  /** The delivery, when it was a resynchronisation: its snapshot stands for everything up to its head. */
  resync?: ChatDelivery__Output;
  messages: ChatMessage__Output[];
}

export type RoomListener = (event: RoomEvent) => void;

interface Waiter {
  readonly resolve: (outcome: PostOutcome) => void;
  readonly reject: (err: unknown) => void;
  readonly deadline: number;
  settled: boolean;
}

interface Ticket {
  readonly entry: OutboxEntry;
  readonly key: string;
  sent: boolean;
  attempts: number;
  notBefore: number;
  waiters: Waiter[];
  /** A caller was told "queued": what happens to it later is logged. */
  told: boolean;
}

type SubState = 'idle' | 'subscribing' | 'live' | 'failed';

interface Subscription {
  readonly room: string;
  state: SubState;
  attempts: number;
  retry?: NodeJS.Timeout;
}

/** How long an acknowledgement waits to share a frame with the next ones. */
export const CHAT_ACK_DELAY_MS = 25;
/** Messages of one room that may wait for their acknowledgement before it goes at once. */
export const CHAT_ACK_EAGER_AFTER = 256;

/**
 * The node's side of the group chat, over its session with the orchestrator. Requests are
 * batched and matched by RequestChannel; posts go through the outbox (memory, and disk when a
 * caller is told "queued") and out in their order, again after every reconnect; the rooms it
 * follows (`fleet`, and those it joined) are subscribed from their cursors on every session,
 * each delivery is applied only if it continues the cursor, and applied seqs are acknowledged.
 */
export class ChatClient {
  private readonly channel: RequestChannel;
  private readonly tickets = new Map<number, Ticket>();
  private readonly byKey = new Map<string, Ticket>();
  /** Tickets to send, in outbox order; `waitingHead` skips the ones taken (no O(n) shift). */
  private waiting: Ticket[] = [];
  private waitingHead = 0;
  private postsInFlight = 0;
  private pumpScheduled = false;
  private pumpTimer: NodeJS.Timeout | undefined;
  /** Callers of `post` waiting while connected, in deadline order (every deadline is now + the same timeout). */
  private deadlines: Array<{ ticket: Ticket; waiter: Waiter }> = [];
  private deadlinesHead = 0;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly subs = new Map<string, Subscription>();
  private readonly listeners = new Map<string, Set<RoomListener>>();
  private readonly acks = new Map<string, number>();
  private ackTimer: NodeJS.Timeout | undefined;
  private ackImmediate: NodeJS.Immediate | undefined;
  /** The last seq acknowledged per room: how far behind the orchestrator's view the acks are. */
  private readonly ackedSeq = new Map<string, number>();
  /** Per room, queued posts delivered since the last reconnect: logged once the outbox is empty. */
  private readonly delivered = new Map<string, { count: number; seq: number }>();
  private closed = false;
  private readonly timeoutMs: number;
  private readonly maxPostsInFlight: number;
  private readonly retryBaseMs: number;
  private readonly log: Logger;

  constructor(private readonly o: ChatClientOptions) {
    this.log = o.logger;
    this.timeoutMs = o.requestTimeoutMs ?? 10_000;
    this.maxPostsInFlight = o.maxPostsInFlight ?? CHAT_MAX_POSTS_IN_FLIGHT;
    this.retryBaseMs = o.retryBaseMs ?? CHAT_RETRY_BASE_MS;
    this.channel = new RequestChannel({
      transport: o.transport, logger: o.logger, timeoutMs: this.timeoutMs, ...(o.maxInFlight ? { maxInFlight: o.maxInFlight } : {}),
    });
    // What earlier runs left: sent first, in their order, on the first session.
    for (const entry of o.outbox.list()) this.addTicket(entry, true);
    if (o.outbox.size > 0) this.log.info('STATE', 'queued chat posts found', { room: roomsOf(o.outbox.list()), count: o.outbox.size });
  }

  /** Posts not yet answered by the orchestrator. */
  get pendingPosts(): number {
    return this.tickets.size;
  }

  /** Whether the node follows `room` (its deliveries reach the listeners). */
  follows(room: string): boolean {
    return room === FLEET_ROOM || this.o.cursors.has(room);
  }

  /** The rooms followed: `fleet` and every room joined. */
  followedRooms(): string[] {
    return [FLEET_ROOM, ...this.o.cursors.list().filter((r) => r !== FLEET_ROOM)];
  }

  /** The node's position in a followed room. */
  cursor(room: string): ChatCursor | undefined {
    return this.o.cursors.get(room);
  }

  /** Calls `listener` with every delivery of `room` applied from now on; returns the unsubscribe. */
  onRoom(room: string, listener: RoomListener): () => void {
    let set = this.listeners.get(room);
    if (!set) this.listeners.set(room, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(room) === set) this.listeners.delete(room);
    };
  }

  /**
   * Posts a message. Connected: resolves with the orchestrator's answer (`posted`), or, when none
   * comes within the request timeout or the session drops first, with `queued` once the post is
   * on disk. Offline: `queued` once on disk. Rejects with the orchestrator's refusal (ChatReplyError),
   * CHAT-REQ-202/207 for a malformed room or id, CHAT-STATE-706 when the outbox is full, and
   * CHAT-STATE-705 when it could not be written (the post is then kept in memory and still sent).
   * A post whose (room, client_msg_id) is pending already is not added twice.
   */
  async post(input: PostInput): Promise<PostOutcome> {
    if (this.closed) throw new ConclaveError('CHAT-NET-601', { detail: 'the node agent is shutting down', data: { room: input.room } });
    // What the orchestrator would refuse is refused here, before it can wait in the outbox.
    checkRoom(input.room);
    if (input.text === '') throw new ConclaveError('CHAT-REQ-204', { detail: 'a message needs text', data: { room: input.room } });
    if (input.clientMsgId !== undefined) checkToken(input.clientMsgId, 'clientMsgId', input.room);
    if (input.resource !== undefined && input.resource !== '') checkToken(input.resource, 'resource', input.room);
    else if (input.fence) throw new ConclaveError('CHAT-REQ-204', { detail: 'a fence needs its resource', data: { room: input.room } });
    const clientMsgId = input.clientMsgId ?? randomUUID();
    const key = keyOf(input.room, clientMsgId);
    let ticket = this.byKey.get(key);
    if (!ticket) {
      const entry = this.o.outbox.add({
        room: input.room, clientMsgId, text: input.text, atMs: Date.now(),
        ...(input.resource ? { resource: input.resource } : {}), ...(input.fence ? { fence: input.fence } : {}),
      });
      ticket = this.addTicket(entry, false);
      this.schedulePump();
    }
    const found = ticket;
    return new Promise<PostOutcome>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, deadline: Date.now() + this.timeoutMs, settled: false };
      found.waiters.push(waiter);
      if (this.channel.connected) this.watchDeadline(found, waiter);
      else void this.persistAndTell([found]);
    });
  }

  /** First come, first served: `ok: false` (with the holder) is an answer, not a rejection. */
  async claim(room: string, resource: string, ttlMs: number): Promise<ChatClaimResult__Output> {
    checkRoom(room);
    checkToken(resource, 'resource', room);
    return this.call({ claim: { room, resource, ttlMs } }, 'claimed');
  }

  async release(room: string, resource: string, fence: number): Promise<ChatReleased__Output> {
    checkRoom(room);
    checkToken(resource, 'resource', room);
    return this.call({ release: { room, resource, fence } }, 'released');
  }

  /** Joins `room` and follows it from its head, from now on and after every reconnect. */
  async join(room: string): Promise<ChatRoom__Output> {
    checkRoom(room);
    const joined = await this.call({ join: { room } }, 'room');
    if (!this.follows(room)) {
      this.o.cursors.set(room, { epoch: joined.epoch, seq: Number(joined.headSeq) });
      this.log.info('STATE', 'joined chat room', { room, seq: Number(joined.headSeq) });
    }
    const sub = this.subs.get(room);
    if (!sub || sub.state === 'idle' || sub.state === 'failed') this.subscribe(room);
    return joined;
  }

  /** Leaves `room`: it is no longer followed. */
  async leave(room: string): Promise<ChatRoom__Output> {
    checkRoom(room);
    const left = await this.call({ leave: { room } }, 'room');
    this.o.cursors.delete(room);
    const sub = this.subs.get(room);
    clearTimeout(sub?.retry);
    this.subs.delete(room);
    this.log.info('STATE', 'left chat room', { room });
    return left;
  }

  async context(room: string): Promise<ChatContext__Output> {
    checkRoom(room);
    return this.call({ context: { room } }, 'context');
  }

  async rooms(): Promise<ChatRoom__Output[]> {
    return (await this.call({ rooms: {} }, 'rooms')).rooms;
  }

  /** Up to `limit` messages after `afterSeq` (0: the orchestrator's page size); a snapshot first when trimmed. */
  async history(room: string, afterSeq: number, limit = 0): Promise<ChatDelivery__Output> {
    checkRoom(room);
    return this.call({ history: { room, afterSeq, limit } }, 'history');
  }

  /** The session is registered: subscribe to every followed room, send every pending post. */
  connected(): void {
    if (this.closed) return;
    for (const room of this.followedRooms()) this.subscribe(room);
    // Everything not in flight, in outbox order, at once: a new session owes no earlier delay.
    this.waiting = [...this.tickets.values()].filter((t) => !t.sent);
    this.waitingHead = 0;
    for (const ticket of this.waiting) ticket.notBefore = 0;
    if (this.waiting.length > 0) this.log.info('NET', 'sending queued chat posts', { room: roomsOf(this.waiting.map((t) => t.entry)), count: this.waiting.length });
    this.schedulePump();
  }

  /** The session ended: requests fail, posts wait for the next one (on disk, their callers told "queued"). */
  disconnected(): void {
    this.channel.sessionLost();
    for (const sub of this.subs.values()) {
      clearTimeout(sub.retry);
      sub.state = 'idle';
    }
    this.cancelAcks();
    void this.persistAndTell([...this.tickets.values()]);
  }

  /** The orchestrator's answers (link handler). */
  receiveReplies(replies: ChatReplies__Output): void {
    this.channel.receive(replies);
  }

  /** A delivery of a subscribed room (link handler): applied only if it continues the cursor. */
  receiveDelivery(delivery: ChatDelivery__Output): void {
    const room = delivery.room;
    const sub = this.subs.get(room);
    if (!sub || !this.follows(room)) {
      this.log.debug('NET', 'chat delivery for a room not followed dropped', { room });
      return;
    }
    const before = this.o.cursors.get(room) ?? { epoch: '', seq: 0 };
    let cursor = before;
    const resync = delivery.snapshot ? delivery : undefined;
    if (delivery.snapshot) {
      cursor = { epoch: delivery.epoch, seq: Number(delivery.snapshot.headSeq) };
    } else if (before.epoch !== '' && delivery.epoch !== '' && delivery.epoch !== before.epoch) {
      this.outOfOrder(sub, before, delivery);
      return;
    }
    const messages = delivery.messages;
    // No position yet (a first subscription, epoch unknown): the log starts where it still holds messages.
    if (!resync && cursor.epoch === '' && cursor.seq === 0 && messages[0]) cursor = { epoch: '', seq: Number(messages[0].seq) - 1 };
    for (let i = 0; i < messages.length; i += 1) {
      if (Number(messages[i]!.seq) !== cursor.seq + 1 + i) {
        this.outOfOrder(sub, cursor, delivery);
        return;
      }
    }
    if (resync) {
      this.log.warn('STATE', 'chat room resynchronised from a snapshot', {
        code: delivery.code || 'CHAT-STATE-703', room, seq: cursor.seq, reason: delivery.resyncReason, fromSeq: before.seq,
      });
    }
    const last = messages.length > 0 ? Number(messages[messages.length - 1]!.seq) : cursor.seq;
    const applied: ChatCursor = { epoch: delivery.epoch || cursor.epoch, seq: last };
    this.o.cursors.set(room, applied);
    const event: RoomEvent = { room, epoch: applied.epoch, messages, ...(resync ? { resync } : {}) };
    for (const listener of [...(this.listeners.get(room) ?? [])]) {
      try {
        listener(event);
      } catch (err) {
        this.log.failure(err, { section: 'REQ', room, seq: last });
      }
    }
    if (messages.length > 0 || resync) this.queueAck(room, last);
  }

  /** Fails what waits for a reply, puts every post on disk (their callers told "queued"), writes the cursors. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.pumpTimer);
    clearTimeout(this.deadlineTimer);
    this.cancelAcks();
    for (const sub of this.subs.values()) clearTimeout(sub.retry);
    this.channel.close();
    await this.persistAndTell([...this.tickets.values()]);
    await this.o.cursors.close();
    await this.o.outbox.close();
  }

  private async call<K extends 'claimed' | 'released' | 'room' | 'context' | 'rooms' | 'history'>(
    op: ChatOp, outcome: K,
  ): Promise<NonNullable<ChatReply__Output[K]>> {
    if (this.closed) throw new ConclaveError('CHAT-NET-601', { detail: 'the node agent is shutting down' });
    const reply = await this.channel.request(op);
    if (reply.error) throw new ChatReplyError(reply.error);
    const value = reply[outcome];
    if (!value) throw new ConclaveError('NODE-STATE-707', { detail: `the orchestrator answered a chat request with "${reply.outcome ?? 'nothing'}", not "${outcome}"` });
    return value as NonNullable<ChatReply__Output[K]>;
  }

  private addTicket(entry: OutboxEntry, loaded: boolean): Ticket {
    const ticket: Ticket = {
      entry, key: keyOf(entry.post.room, entry.post.clientMsgId), sent: false, attempts: 0, notBefore: 0, waiters: [], told: loaded,
    };
    this.tickets.set(entry.n, ticket);
    this.byKey.set(ticket.key, ticket);
    this.waiting.push(ticket);
    return ticket;
  }

  private removeTicket(ticket: Ticket): void {
    this.tickets.delete(ticket.entry.n);
    if (this.byKey.get(ticket.key) === ticket) this.byKey.delete(ticket.key);
    this.o.outbox.remove(ticket.entry);
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Sends waiting posts in order while the post window has room; a post not due yet holds back those after it. */
  private pump(): void {
    if (this.closed || !this.channel.connected) return;
    const now = Date.now();
    while (this.waitingHead < this.waiting.length && this.postsInFlight < this.maxPostsInFlight) {
      const ticket = this.waiting[this.waitingHead]!;
      if (!this.tickets.has(ticket.entry.n) || ticket.sent) {
        this.waitingHead += 1;
        continue;
      }
      if (ticket.notBefore > now) {
        clearTimeout(this.pumpTimer);
        this.pumpTimer = setTimeout(() => this.pump(), ticket.notBefore - now);
        this.pumpTimer.unref();
        break;
      }
      const { post } = ticket.entry;
      try {
        this.channel.issue(
          {
            post: {
              room: post.room, clientMsgId: post.clientMsgId, text: post.text,
              ...(post.resource ? { resource: post.resource } : {}), ...(post.fence ? { fence: post.fence } : {}),
            },
          },
          (reply, failure) => this.postAnswered(ticket, reply, failure),
        );
      } catch {
        // The window is full of other requests (or the session just went): look again shortly.
        clearTimeout(this.pumpTimer);
        this.pumpTimer = setTimeout(() => this.pump(), 50);
        this.pumpTimer.unref();
        break;
      }
      this.waitingHead += 1;
      ticket.sent = true;
      this.postsInFlight += 1;
    }
    if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.waitingHead);
      this.waitingHead = 0;
    }
  }

  private postAnswered(ticket: Ticket, reply: ChatReply__Output | undefined, failure: ConclaveError | undefined): void {
    ticket.sent = false;
    this.postsInFlight -= 1;
    const { room, clientMsgId } = ticket.entry.post;
    if (reply?.posted) {
      this.posted(ticket, reply.posted);
    } else if (reply?.error && !reply.error.retryable) {
      this.refused(ticket, new ChatReplyError(reply.error));
    } else if (reply) {
      this.retryLater(ticket);
      this.log.debug('REQ', 'chat post to be tried again', { room, clientMsgId, code: reply.error?.code ?? '', attempts: ticket.attempts });
    } else {
      const reason = noReplyReason(failure);
      // No answer in time on a live session: sent again after a delay (the orchestrator keeps one per client_msg_id).
      if (reason === 'timeout') this.retryLater(ticket);
      else if (reason === 'offline' || reason === 'lost') this.requeue(ticket, 0);
    }
    this.schedulePump();
  }

  private posted(ticket: Ticket, posted: ChatPosted__Output): void {
    const { room, clientMsgId } = ticket.entry.post;
    const seq = Number(posted.seq);
    this.removeTicket(ticket);
    for (const waiter of ticket.waiters) this.settle(waiter, () => waiter.resolve({ queued: false, posted }));
    this.log.debug('REQ', 'chat post appended', { room, seq, clientMsgId, duplicate: posted.duplicate });
    if (ticket.told) {
      const count = this.delivered.get(room) ?? { count: 0, seq: 0 };
      this.delivered.set(room, { count: count.count + 1, seq: Math.max(count.seq, seq) });
    }
    if (this.tickets.size === 0 && this.delivered.size > 0) {
      for (const [deliveredRoom, d] of this.delivered) this.log.info('NET', 'queued chat posts delivered', { room: deliveredRoom, seq: d.seq, count: d.count });
      this.delivered.clear();
    }
  }

  private refused(ticket: Ticket, err: ChatReplyError): void {
    const { room, clientMsgId } = ticket.entry.post;
    this.removeTicket(ticket);
    for (const waiter of ticket.waiters) this.settle(waiter, () => waiter.reject(err));
    // A caller still waiting hears it; one told "queued" long ago can only read it here.
    this.log[ticket.told ? 'warn' : 'debug']('REQ', 'chat post refused by the orchestrator', { code: err.code, room, clientMsgId, reason: err.message });
  }

  private retryLater(ticket: Ticket): void {
    ticket.attempts += 1;
    this.requeue(ticket, Date.now() + backoffDelayMs(ticket.attempts, { baseMs: this.retryBaseMs, capMs: CHAT_RETRY_CAP_MS }));
  }

  /** Back among the waiting posts, at its place in outbox order. */
  private requeue(ticket: Ticket, notBefore: number): void {
    ticket.notBefore = notBefore;
    if (!this.tickets.has(ticket.entry.n)) return;
    if (this.waitingHead > 0) {
      this.waiting = this.waiting.slice(this.waitingHead);
      this.waitingHead = 0;
    }
    let lo = 0;
    let hi = this.waiting.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.waiting[mid]!.entry.n < ticket.entry.n) lo = mid + 1;
      else hi = mid;
    }
    if (this.waiting[lo] !== ticket) this.waiting.splice(lo, 0, ticket);
  }

  private settle(waiter: Waiter, run: () => void): void {
    if (waiter.settled) return;
    waiter.settled = true;
    run();
  }

  /** Writes the posts whose callers still wait (and any not on disk), then tells those callers "queued". */
  private async persistAndTell(tickets: readonly Ticket[]): Promise<void> {
    const entries = tickets.filter((t) => !t.entry.durable).map((t) => t.entry);
    const telling = tickets.flatMap((t) => t.waiters.filter((w) => !w.settled).map((waiter) => ({ ticket: t, waiter })));
    if (entries.length === 0 && telling.length === 0) return;
    let failure: unknown;
    try {
      await this.o.outbox.persist(entries);
    } catch (err) {
      failure = err;
      this.log.failure(err, { room: roomsOf(entries), count: entries.length }, 'warn');
    }
    for (const { ticket, waiter } of telling) {
      // Answered while the write was under way: the caller has heard already.
      if (waiter.settled || !this.tickets.has(ticket.entry.n)) continue;
      if (failure === undefined || ticket.entry.durable) {
        ticket.told = true;
        const { room, clientMsgId } = ticket.entry.post;
        this.settle(waiter, () => waiter.resolve({ queued: true, room, clientMsgId }));
      } else {
        this.settle(waiter, () => waiter.reject(failure));
      }
    }
  }

  private watchDeadline(ticket: Ticket, waiter: Waiter): void {
    this.deadlines.push({ ticket, waiter });
    if (!this.deadlineTimer) this.armDeadline();
  }

  private armDeadline(): void {
    while (this.deadlinesHead < this.deadlines.length && this.deadlines[this.deadlinesHead]!.waiter.settled) this.deadlinesHead += 1;
    if (this.deadlinesHead > 1024 && this.deadlinesHead * 2 > this.deadlines.length) {
      this.deadlines = this.deadlines.slice(this.deadlinesHead);
      this.deadlinesHead = 0;
    }
    const head = this.deadlines[this.deadlinesHead];
    if (!head) {
      this.deadlineTimer = undefined;
      return;
    }
    this.deadlineTimer = setTimeout(() => {
      const now = Date.now();
      const due = new Set<Ticket>();
      while (this.deadlinesHead < this.deadlines.length) {
        const next = this.deadlines[this.deadlinesHead]!;
        if (!next.waiter.settled && next.waiter.deadline > now) break;
        this.deadlinesHead += 1;
        if (!next.waiter.settled) due.add(next.ticket);
      }
      // No answer in time: the callers are told "queued" once their posts are on disk.
      if (due.size > 0) void this.persistAndTell([...due]);
      this.armDeadline();
    }, Math.max(0, head.waiter.deadline - Date.now()));
    this.deadlineTimer.unref();
  }

  private subscribe(room: string): void {
    let sub = this.subs.get(room);
    if (!sub) this.subs.set(room, (sub = { room, state: 'idle', attempts: 0 }));
    clearTimeout(sub.retry);
    if (this.closed || !this.channel.connected) {
      sub.state = 'idle';
      return;
    }
    const cursor = this.o.cursors.get(room) ?? { epoch: '', seq: 0 };
    sub.state = 'subscribing';
    const current = sub;
    try {
      this.channel.issue({ subscribe: { room, afterSeq: cursor.seq, epoch: cursor.epoch } }, (reply, failure) => this.subscribed(current, cursor, reply, failure));
    } catch (err) {
      // The window is full: try again shortly.
      this.log.debug('NET', 'chat subscribe deferred', { room, err });
      this.subscribeLater(current);
    }
  }

  private subscribed(sub: Subscription, cursor: ChatCursor, reply: ChatReply__Output | undefined, failure: ConclaveError | undefined): void {
    if (this.subs.get(sub.room) !== sub) return;
    const { room } = sub;
    if (reply?.room) {
      sub.state = 'live';
      sub.attempts = 0;
      this.log.debug('NET', 'chat room subscribed', { room, seq: cursor.seq, headSeq: Number(reply.room.headSeq), epoch: reply.room.epoch });
      return;
    }
    if (reply) {
      const err = reply.error ? new ChatReplyError(reply.error) : undefined;
      if (err && !err.retryable) {
        sub.state = 'failed';
        this.log.warn('NET', 'chat room subscription refused', { code: err.code, room, seq: cursor.seq, reason: err.message });
        return;
      }
      // Retryable (Redis away, too many rooms): said once, then tried again with backoff.
      if (sub.attempts === 0) this.log.warn('NET', 'chat room subscription failed; trying again', { code: err?.code ?? '', room, seq: cursor.seq, reason: err?.message ?? '' });
      this.subscribeLater(sub);
      return;
    }
    if (noReplyReason(failure) === 'timeout') this.subscribeLater(sub);
    else sub.state = 'idle';
  }

  private subscribeLater(sub: Subscription): void {
    sub.state = 'idle';
    sub.attempts += 1;
    sub.retry = setTimeout(() => this.subscribe(sub.room), backoffDelayMs(sub.attempts, { baseMs: this.retryBaseMs, capMs: CHAT_RETRY_CAP_MS }));
    sub.retry.unref();
  }

  /**
   * A delivery that does not continue the cursor (a gap, a seq at or below it: Redis lost its
   * tail, or another epoch) is never applied: subscribing again from the cursor makes the
   * orchestrator send what follows it, or a resynchronisation.
   */
  private outOfOrder(sub: Subscription, cursor: ChatCursor, delivery: ChatDelivery__Output): void {
    const first = delivery.messages[0];
    if (sub.state === 'subscribing') {
      this.log.debug('NET', 'chat delivery out of order while subscribing; dropped', { room: sub.room, seq: cursor.seq, firstSeq: Number(first?.seq ?? 0) });
      return;
    }
    this.log.info('NET', 'chat delivery does not continue the cursor; subscribing again', {
      room: sub.room, seq: cursor.seq, firstSeq: Number(first?.seq ?? 0), epoch: cursor.epoch, deliveryEpoch: delivery.epoch,
    });
    this.subscribe(sub.room);
  }

  /**
   * Acknowledgements wait CHAT_ACK_DELAY_MS to share one frame (a room of 100 messages a second is
   * then 40 acks a second, not 100), or go in the next turn once CHAT_ACK_EAGER_AFTER messages of a
   * room wait for theirs: well inside the orchestrator's window of 1,024.
   */
  private queueAck(room: string, seq: number): void {
    this.acks.set(room, seq);
    if (seq - (this.ackedSeq.get(room) ?? 0) >= CHAT_ACK_EAGER_AFTER) {
      clearTimeout(this.ackTimer);
      this.ackTimer = undefined;
      this.ackImmediate ??= setImmediate(() => this.flushAcks());
    } else if (!this.ackTimer && !this.ackImmediate) {
      this.ackTimer = setTimeout(() => this.flushAcks(), CHAT_ACK_DELAY_MS);
      this.ackTimer.unref();
    }
  }

  private flushAcks(): void {
    this.cancelAcks(false);
    const acks = [...this.acks];
    this.acks.clear();
    for (const [room, seq] of acks) {
      this.ackedSeq.set(room, seq);
      this.o.transport.send({ chatAck: { room, seq } });
    }
  }

  /** Pending acks are dropped with the session (the next one resumes from the cursor anyway). */
  private cancelAcks(dropPending = true): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.ackImmediate) clearImmediate(this.ackImmediate);
    this.ackImmediate = undefined;
    if (dropPending) {
      this.acks.clear();
      this.ackedSeq.clear();
    }
  }
}

function keyOf(room: string, clientMsgId: string): string {
  return `${room}\u0000${clientMsgId}`;
}

function roomsOf(entries: readonly OutboxEntry[]): string {
  return [...new Set(entries.map((e) => e.post.room))].join(',');
}

export function checkRoom(room: string): void {
  if (typeof room !== 'string' || !CHAT_ROOM_NAME_PATTERN.test(room)) {
    throw new ConclaveError('CHAT-REQ-202', { detail: JSON.stringify(room), data: { room: String(room) } });
  }
}

function checkToken(value: string, field: 'clientMsgId' | 'resource', room: string): void {
  if (typeof value !== 'string' || !CHAT_TOKEN_PATTERN.test(value)) {
    throw new ConclaveError('CHAT-REQ-207', { detail: `${field} ${JSON.stringify(value)}`, data: { room } });
  }
}
