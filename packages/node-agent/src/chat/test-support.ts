import type {
  ChatAck, ChatDelivery__Output, ChatMessage__Output, ChatReply__Output, ChatRequest, ChatRoom__Output, NodeMessage,
} from '@conclave/protocol';
import type { ChatTransport } from './request-channel.js';

/** For tests only: a ChatMessage as the codec decodes it (every field present). */
export function chatMessage(room: string, seq: number, text: string, extra: Partial<ChatMessage__Output> = {}): ChatMessage__Output {
  return {
    room, seq, sender: 'node-x', kind: 'text', text, atMs: 1_700_000_000_000 + seq, clientMsgId: '', resource: '', fence: 0, ttlMs: 0, senderName: '', ...extra,
  };
}

export function chatDelivery(room: string, epoch: string, messages: ChatMessage__Output[], extra: Partial<ChatDelivery__Output> = {}): ChatDelivery__Output {
  return { room, epoch, messages, snapshot: null, resyncReason: '', code: '', ...extra };
}

interface FakeRoom {
  epoch: string;
  log: ChatMessage__Output[];
  members: Set<string>;
}

/** Where the fake sends what a real session would carry to the node. */
export interface FakeChatPeer {
  receiveReplies(replies: { replies: ChatReply__Output[] }): void;
  receiveDelivery(delivery: ChatDelivery__Output): void;
}

/**
 * For tests only: the orchestrator's side of the chat, in memory, behind a ChatTransport. It
 * answers each frame a turn later (like a network), appends posts idempotently by client_msg_id,
 * delivers to the session's subscriptions, and can be taken offline and back.
 */
export class FakeChatOrchestrator implements ChatTransport {
  connected = true;
  /** Every ChatRequests frame sent, in order. */
  readonly frames: ChatRequest[][] = [];
  readonly acks: ChatAck[] = [];
  readonly rooms = new Map<string, FakeRoom>();
  /** While true, frames are kept in `held` instead of answered. */
  hold = false;
  held: ChatRequest[][] = [];
  /** While true, requests are carried out but their replies lost (a session that drops before answering). */
  dropReplies = false;
  /** Replaces the answer to one request (a refusal, nothing at all: `null`). */
  override: ((request: ChatRequest) => ChatReply__Output | null | undefined) | undefined;
  private readonly subscribed = new Set<string>();
  private readonly ids = new Map<string, number>();
  peer: FakeChatPeer | undefined;

  constructor(readonly member = 'node-x') {
    this.createRoom('fleet');
  }

  createRoom(name: string, epoch = 'e1'): FakeRoom {
    const room: FakeRoom = { epoch, log: [], members: new Set([this.member]) };
    this.rooms.set(name, room);
    return room;
  }

  /** Every post request sent, in order (resends included). */
  posts(): Array<NonNullable<ChatRequest['post']>> {
    return this.frames.flat().flatMap((r) => (r.post ? [r.post] : []));
  }

  requests(op: NonNullable<ChatRequest['op']> | 'post' | 'subscribe' | 'claim' | 'history' | 'join'): ChatRequest[] {
    return this.frames.flat().filter((r) => r[op as keyof ChatRequest] !== undefined);
  }

  send(message: NodeMessage): boolean {
    if (!this.connected) return false;
    if (message.chatAck) this.acks.push(message.chatAck);
    const requests = message.chat?.requests;
    if (requests) {
      this.frames.push(requests);
      if (this.hold) this.held.push(requests);
      else setImmediate(() => this.answer(requests));
    }
    return true;
  }

  /** Answers the frames held so far. */
  release(): void {
    const held = this.held;
    this.held = [];
    for (const frame of held) this.answer(frame);
  }

  /** The session drops: subscriptions end (the peer is told, like the link's handler). */
  drop(): void {
    this.connected = false;
    this.subscribed.clear();
    this.held = [];
  }

  /** Appends as another member would, and delivers to this session's subscription. */
  append(roomName: string, text: string, sender = 'node-y'): ChatMessage__Output {
    const room = this.rooms.get(roomName)!;
    const message = chatMessage(roomName, room.log.length + 1, text, { sender });
    room.log.push(message);
    if (this.subscribed.has(roomName) && this.connected) this.peer?.receiveDelivery(chatDelivery(roomName, room.epoch, [message]));
    return message;
  }

  private answer(requests: readonly ChatRequest[]): void {
    if (!this.connected) return;
    const replies: ChatReply__Output[] = [];
    const after: Array<() => void> = [];
    for (const request of requests) {
      const requestId = Number(request.requestId);
      const replaced = this.override?.(request);
      if (replaced === null) continue;
      if (replaced) {
        replies.push({ ...replaced, requestId });
        continue;
      }
      replies.push({ requestId, ...this.outcome(request, after) } as ChatReply__Output);
    }
    if (replies.length > 0 && !this.dropReplies) this.peer?.receiveReplies({ replies });
    for (const run of after) run();
  }

  private outcome(request: ChatRequest, after: Array<() => void>): Partial<ChatReply__Output> {
    const name = request.post?.room ?? request.subscribe?.room ?? request.join?.room ?? request.leave?.room ?? request.history?.room
      ?? request.context?.room ?? request.claim?.room ?? request.release?.room ?? '';
    const room = this.rooms.get(name);
    if (request.rooms) return { outcome: 'rooms', rooms: { rooms: [...this.rooms.keys()].map((n) => this.info(n)) } };
    if (!room) return error('CHAT-REQ-201', `unknown room: ${name}`);
    if (request.post) {
      const post = request.post;
      const key = `${name}\u0000${post.clientMsgId ?? ''}`;
      const known = this.ids.get(key);
      if (known !== undefined) return { outcome: 'posted', posted: posted(name, known, post.clientMsgId ?? '', true) };
      const message = chatMessage(name, room.log.length + 1, post.text ?? '', { sender: this.member, clientMsgId: post.clientMsgId ?? '' });
      room.log.push(message);
      this.ids.set(key, message.seq);
      if (this.subscribed.has(name)) after.push(() => this.peer?.receiveDelivery(chatDelivery(name, room.epoch, [message])));
      return { outcome: 'posted', posted: posted(name, message.seq, post.clientMsgId ?? '', false) };
    }
    if (request.subscribe) {
      const afterSeq = Number(request.subscribe.afterSeq ?? 0);
      const epoch = request.subscribe.epoch ?? '';
      this.subscribed.add(name);
      const head = room.log.length;
      after.push(() => {
        if ((epoch && epoch !== room.epoch) || afterSeq > head) {
          const snapshot = { room: name, epoch: room.epoch, headSeq: head, summary: '', summaryThroughSeq: 0, messages: room.log.slice(-5), tokens: 0, maxMessages: 50, maxTokens: 2048 };
          this.peer?.receiveDelivery(chatDelivery(name, room.epoch, [], { snapshot, resyncReason: afterSeq > head ? 'regressed' : 'epoch', code: 'CHAT-STATE-703' }));
        } else if (afterSeq < head) {
          this.peer?.receiveDelivery(chatDelivery(name, room.epoch, room.log.slice(afterSeq)));
        }
      });
      return { outcome: 'room', room: this.info(name) };
    }
    if (request.join) {
      room.members.add(this.member);
      return { outcome: 'room', room: this.info(name) };
    }
    if (request.leave) {
      room.members.delete(this.member);
      this.subscribed.delete(name);
      return { outcome: 'room', room: this.info(name) };
    }
    if (request.history) {
      const afterSeq = Number(request.history.afterSeq ?? 0);
      const limit = request.history.limit || 256;
      return { outcome: 'history', history: chatDelivery(name, room.epoch, room.log.slice(afterSeq, afterSeq + limit)) };
    }
    if (request.context) {
      return {
        outcome: 'context',
        context: { room: name, epoch: room.epoch, headSeq: room.log.length, summary: '', summaryThroughSeq: 0, messages: room.log.slice(-50), tokens: 0, maxMessages: 50, maxTokens: 2048 },
      };
    }
    if (request.claim) {
      return {
        outcome: 'claimed',
        claimed: {
          ok: true, room: name, resource: request.claim.resource ?? '', fence: 1, seq: room.log.length + 1, holder: this.member, expiresAtMs: 1, code: '',
        },
      };
    }
    if (request.release) {
      return { outcome: 'released', released: { room: name, resource: request.release.resource ?? '', fence: Number(request.release.fence ?? 0), seq: room.log.length + 1 } };
    }
    return error('CHAT-REQ-204', 'unknown op');
  }

  info(name: string): ChatRoom__Output {
    const room = this.rooms.get(name)!;
    return { name, epoch: room.epoch, headSeq: room.log.length, members: [...room.members], createdAtMs: 1, createdBy: 'operator', firstSeq: room.log.length ? 1 : 0 };
  }
}

function posted(room: string, seq: number, clientMsgId: string, duplicate: boolean): NonNullable<ChatReply__Output['posted']> {
  return { room, seq, sender: 'node-x', clientMsgId, duplicate, atMs: 1 };
}

export function error(code: string, message: string, retryable = false): Partial<ChatReply__Output> {
  return { outcome: 'error', error: { code, message, status: '', retryable } };
}
