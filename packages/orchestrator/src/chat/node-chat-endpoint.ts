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

/** What the endpoint needs of its node session. */
export interface ChatEndpointSession {
  readonly id: string;
  readonly name: string;
  readonly isClosed: boolean;
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
  private readonly waiting: ChatRequest__Output[] = [];
  private started = false;
  private closed = false;
  private inFlight = 0;
  private replies: ChatReply[] = [];
  private flushScheduled = false;

  constructor(private readonly o: NodeChatEndpointOptions) {
    this.member = { id: o.session.id, role: 'node', ...(o.session.name && o.session.name !== o.session.id ? { name: o.session.name } : {}) };
  }

  /** Makes the node a member of `fleet` (once: a member already is one), then answers what waited. */
  async start(): Promise<void> {
    try {
      await this.o.chat.join(FLEET_ROOM, this.member);
    } catch (err) {
      // Its requests are answered anyway: a `fleet` post then says why it cannot be taken.
      this.o.logger.failure(err, { room: FLEET_ROOM }, 'warn');
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
    let work: Promise<Omit<ChatReply, 'requestId'>>;
    try {
      if (!this.o.redisAvailable()) throw new ConclaveError('ORCH-STATE-710', { detail: 'Redis is not connected' });
      work = this.run(request);
    } catch (err) {
      work = Promise.reject(err);
    }
    work.then(
      (outcome) => this.reply(request.requestId, outcome),
      (err: unknown) => this.reply(request.requestId, err),
    ).finally(() => {
      this.inFlight -= 1;
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
    if (!this.subscriptions.has(room) && this.subscriptions.size >= MAX_CHAT_ROOMS_PER_NODE) {
      throw new ConclaveError('CHAT-REQ-208', { detail: `${MAX_CHAT_ROOMS_PER_NODE} rooms followed`, data: { room } });
    }
    // A resubscription (the node saw a gap or a seq go back) replaces the one before.
    this.unsubscribe(room);
    const { session } = this.o;
    const subscription = await this.o.chat.subscribe(this.member, { room, afterSeq, epoch, follow: true, acks: true }, {
      deliver: (chatDelivery) => {
        session.send({ chatDelivery });
        return !session.isClosed;
      },
      writable: () => session.drained(),
    });
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
      if (!error.code.startsWith('CHAT-')) this.o.logger.failure(error, { node: this.member.id }, 'warn');
      this.replies.push({ requestId, error: jobErrorOf(error) });
    } else if (outcome.context || outcome.history) {
      // Up to a window of messages each: sent alone, so that a frame of them stays under the limit.
      this.o.session.send({ chatReplies: { replies: [{ requestId, ...outcome }] } });
      return;
    } else {
      this.replies.push({ requestId, ...outcome });
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Replies that are ready in the same turn (a pipelined batch of posts) share one sealed frame.
    setImmediate(() => {
      this.flushScheduled = false;
      const replies = this.replies;
      this.replies = [];
      if (replies.length > 0) this.o.session.send({ chatReplies: { replies } });
    });
  }
}

function isReply(x: unknown): x is Omit<ChatReply, 'requestId'> {
  return typeof x === 'object' && x !== null && !(x instanceof Error);
}
