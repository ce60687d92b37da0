import { ConclaveError, toConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { jobErrorOf } from '@conclave/protocol';
import type { ChatReply, ChatRequest__Output, OrchestratorMessage } from '@conclave/protocol';
import type { ChatFromNode } from '../node-session.js';
import type { ChatApi, ChatMember, ChatSubscription } from './chat-api.js';
import { FLEET_ROOM } from './chat.js';

/** Requests one node may have waiting or running at once; more are answered CHAT-REQ-208. */
export const MAX_CHAT_REQUESTS_PER_NODE = 1_024;
/** Rooms one node may follow at once. */
export const MAX_CHAT_ROOMS_PER_NODE = 64;
/** Replies batched into one frame up to about this many bytes (the frame limit is 4 MiB). */
export const MAX_REPLY_BATCH_BYTES = 256 * 1024;

/** What the endpoint needs of its node session. */
export interface ChatEndpointSession {
  readonly id: string;
  readonly name: string;
  readonly isClosed: boolean;
  /** The stream's buffer is full: deliveries wait for `drained()`. */
  readonly backpressured: boolean;
  send(message: OrchestratorMessage): void;
  /** Resolves once the stream can take more. */
  drained(): Promise<void>;
}

export interface NodeChatEndpointOptions {
  chat: ChatApi;
  session: ChatEndpointSession;
  logger: Logger;
  /** Refuses work at once while Redis is away (ORCH-STATE-710). */
  redisAvailable: () => boolean;
}

/**
 * One node session's side of the chat: it answers the node's requests (in the order they came,
 * so a node's posts keep their order in the log), batches the replies of one turn into one
 * sealed frame, and runs the node's subscriptions, whose deliveries the node acknowledges.
 * The node is a member of `fleet` from `start()` on; until then its requests wait.
 */
export class NodeChatEndpoint {
  private readonly member: ChatMember;
  private readonly subscriptions = new Map<string, ChatSubscription>();
  /** Per room, a post refused retryably: later posts wait for it (checkPostOrder). */
  private readonly heldBack = new Map<string, { clientMsgId: string; error: ConclaveError }>();
  /** Rooms whose subscribe is under way: they count against the limit too. */
  private readonly subscribing = new Set<string>();
  private readonly waiting: ChatRequest__Output[] = [];
  private started = false;
  private closed = false;
  private inFlight = 0;
  private replies: ChatReply[] = [];
  private flushScheduled = false;
  private replyBytes = 0;

  constructor(private readonly o: NodeChatEndpointOptions) {
    this.member = { id: o.session.id, role: 'node', ...(o.session.name && o.session.name !== o.session.id ? { name: o.session.name } : {}) };
  }

  /** Makes the node a member of `fleet` (once: a member already is one), then answers what waited. */
  async start(): Promise<void> {
    try {
      await this.o.chat.join(FLEET_ROOM, this.member);
    } catch (err) {
      // Its requests are answered anyway: a `fleet` post then says why it cannot be taken.
      this.o.logger.failure(err, { room: FLEET_ROOM, seq: 0 }, 'warn');
    }
    this.started = true;
    for (const request of this.waiting.splice(0)) this.handle(request);
  }

  receive(message: ChatFromNode): void {
    if (this.closed) return;
    if ('ack' in message) {
      this.subscriptions.get(message.ack.room)?.ack(Number(message.ack.seq));
      return;
    }
    for (const request of message.requests.requests) {
      if (this.inFlight + this.waiting.length >= MAX_CHAT_REQUESTS_PER_NODE) {
        this.reply(request.requestId, new ConclaveError('CHAT-REQ-208', {
          detail: `${MAX_CHAT_REQUESTS_PER_NODE} requests in flight`, data: { node: this.member.id },
        }));
      } else if (this.started) this.handle(request);
      else this.waiting.push(request);
    }
  }

  close(): void {
    this.closed = true;
    for (const subscription of this.subscriptions.values()) subscription.close();
    this.subscriptions.clear();
  }

  private handle(request: ChatRequest__Output): void {
    this.inFlight += 1;
    const post = request.op === 'post' ? request.post : undefined;
    let work: Promise<Omit<ChatReply, 'requestId'>>;
    try {
      if (post) this.checkPostOrder(post.room, post.clientMsgId);
      if (!this.o.redisAvailable()) throw new ConclaveError('ORCH-STATE-710', { detail: 'Redis is not connected' });
      work = this.run(request);
    } catch (err) {
      work = Promise.reject(err);
    }
    work.then(
      (outcome) => this.reply(request.requestId, outcome),
      (err: unknown) => {
        if (post) this.holdPostsBehind(post.room, post.clientMsgId, err);
        this.reply(request.requestId, err);
      },
    ).finally(() => {
      this.inFlight -= 1;
    });
  }

  /**
   * A node's posts to a room keep its order: once one is refused with a retryable error (Redis
   * away), the node sends it again before the ones after it, so those that arrive first are
   * refused the same way until it comes back. Without this, a post already on its way behind the
   * refused one would be appended before it.
   */
  private checkPostOrder(room: string, clientMsgId: string): void {
    const held = this.heldBack.get(room);
    if (!held) return;
    if (held.clientMsgId === clientMsgId) {
      this.heldBack.delete(room);
      return;
    }
    throw held.error;
  }

  private holdPostsBehind(room: string, clientMsgId: string, err: unknown): void {
    const error = toConclaveError(err, 'ORCH-STATE-710');
    if (!error.entry.retryable || !clientMsgId || this.heldBack.has(room)) return;
    this.heldBack.set(room, {
      clientMsgId, error: new ConclaveError(error.code, { detail: `an earlier post (${clientMsgId}) goes first: ${error.message}`, data: { room } }),
    });
  }

  /** Each op's answer. Called synchronously in arrival order: the Redis commands go out in that order. */
  private run(request: ChatRequest__Output): Promise<Omit<ChatReply, 'requestId'>> {
    const { chat } = this.o;
    const member = this.member;
    switch (request.op) {
      case 'post':
        return chat.post(member, request.post ?? {}).then((posted) => ({ posted }));
      case 'claim':
        return chat.claim(member, request.claim ?? {}).then((claimed) => ({ claimed }));
      case 'release':
        return chat.release(member, request.release ?? {}).then((released) => ({ released }));
      case 'join':
        return chat.join(request.join?.room ?? '', member).then((room) => ({ room }));
      case 'leave': {
        const room = request.leave?.room ?? '';
        return chat.leave(room, member).then((info) => {
          this.unsubscribe(room);
          return { room: info };
        });
      }
      case 'subscribe':
        return this.subscribe(request.subscribe?.room ?? '', Number(request.subscribe?.afterSeq ?? 0), request.subscribe?.epoch ?? '');
      case 'unsubscribe': {
        const room = request.unsubscribe?.room ?? '';
        this.unsubscribe(room);
        return chat.getRoom(room).then((info) => ({ room: info }));
      }
      case 'context':
        return chat.context(request.context?.room ?? '', member).then((context) => ({ context }));
      case 'rooms':
        return chat.listRooms().then((rooms) => ({ rooms: { rooms } }));
      case 'history': {
        const h = request.history;
        return chat.history(member, h?.room ?? '', Number(h?.afterSeq ?? 0), h?.limit ?? 0).then((history) => ({ history }));
      }
      case undefined:
        return Promise.reject(new ConclaveError('CHAT-REQ-204', { detail: 'a chat request without an op' }));
      default: {
        // A new op in the proto is a compile error here until it has its case.
        const unhandled: never = request.op;
        return Promise.reject(new ConclaveError('CHAT-REQ-204', { detail: `unknown op ${String(unhandled)}` }));
      }
    }
  }

  private async subscribe(room: string, afterSeq: number, epoch: string): Promise<Omit<ChatReply, 'requestId'>> {
    const followed = new Set([...this.subscriptions.keys(), ...this.subscribing]);
    if (!followed.has(room) && followed.size >= MAX_CHAT_ROOMS_PER_NODE) {
      throw new ConclaveError('CHAT-REQ-208', { detail: `${MAX_CHAT_ROOMS_PER_NODE} rooms followed`, data: { room } });
    }
    // A resubscription (the node saw a gap or a seq go back) replaces the one before.
    this.unsubscribe(room);
    const { session } = this.o;
    this.subscribing.add(room);
    const subscription = await this.o.chat.subscribe(this.member, { room, afterSeq, epoch, follow: true, acks: true }, {
      deliver: (chatDelivery) => {
        session.send({ chatDelivery });
        return !session.isClosed && !session.backpressured;
      },
      writable: () => session.drained(),
    }).finally(() => this.subscribing.delete(room));
    if (this.closed) {
      subscription.close();
    } else {
      this.subscriptions.get(room)?.close();
      this.subscriptions.set(room, subscription);
    }
    return { room: await this.o.chat.getRoom(room) };
  }

  private unsubscribe(room: string): void {
    this.subscriptions.get(room)?.close();
    this.subscriptions.delete(room);
  }

  private reply(requestId: number, outcome: Omit<ChatReply, 'requestId'> | unknown): void {
    if (this.closed) return;
    if (outcome instanceof Error || !isReply(outcome)) {
      // Anything uncoded comes from Redis (a dropped connection, a timeout).
      const error = toConclaveError(outcome, 'ORCH-STATE-710');
      if (!error.code.startsWith('CHAT-')) this.o.logger.failure(error, { node: this.member.id, room: '', seq: 0 }, 'warn');
      this.replies.push({ requestId, error: jobErrorOf(error) });
    } else if (outcome.context || outcome.history) {
      // Up to a window of messages each: sent alone, so that a frame of them stays under the limit.
      this.send({ chatReplies: { replies: [{ requestId, ...outcome }] } });
      return;
    } else {
      this.replies.push({ requestId, ...outcome });
      this.replyBytes += estimatedReplyBytes(outcome);
    }
    // Replies that are ready in the same turn (a pipelined batch of posts) share one sealed
    // frame, up to a size far below the frame limit (room replies carry member lists).
    if (this.replyBytes >= MAX_REPLY_BATCH_BYTES) {
      this.flushReplies();
      return;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flushReplies());
  }

  private flushReplies(): void {
    this.flushScheduled = false;
    const replies = this.replies;
    this.replies = [];
    this.replyBytes = 0;
    if (replies.length > 0) this.send({ chatReplies: { replies } });
  }

  /** A frame that cannot be sealed (too large) is logged, never thrown into a timer or the session. */
  private send(message: OrchestratorMessage): void {
    try {
      this.o.session.send(message);
    } catch (err) {
      // Not one room's: a frame of replies or a delivery can hold several.
      this.o.logger.failure(err, { node: this.member.id, room: '', seq: 0 }, 'warn');
    }
  }
}

/** A generous guess at a reply's encoded size: ids and seqs, plus the member lists of room replies. */
function estimatedReplyBytes(outcome: Omit<ChatReply, 'requestId'>): number {
  const members = (outcome.room?.members?.length ?? 0) + (outcome.rooms?.rooms ?? []).reduce((n, r) => n + (r.members?.length ?? 0) + 4, 0);
  return 256 + members * 80;
}

function isReply(x: unknown): x is Omit<ChatReply, 'requestId'> {
  return typeof x === 'object' && x !== null && !(x instanceof Error);
}
