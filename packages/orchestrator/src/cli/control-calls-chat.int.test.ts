// The chat calls of ControlCalls against the chat Control handlers on a real gRPC server (port 0,
// in process) over a scripted ChatApi: the wire shapes, FollowRoom's end, cancel and back-pressure,
// and coded errors. The real chat behind it is in chat-cli.int.test.ts.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError, nullLogger } from '@conclave/common';
import { createControlClient, loadConclaveProtos } from '@conclave/protocol';
import type {
  ChatClaim, ChatClaimResult, ChatContext, ChatDelivery, ChatDelivery__Output, ChatMessage, ChatPost, ChatPosted, ChatRelease, ChatReleased, ChatRoom,
} from '@conclave/protocol';
import type { ChatApi, ChatMember, ChatSink, ChatSubscribeOptions, ChatSubscription } from '../chat/chat-api.js';
import { createChatControlService } from '../chat/chat-control-service.js';
import { ControlCallError, controlCallsFromClient, type ControlCalls } from './control-calls.js';

/** A room's log in memory, delivered to subscribers the way the real chat does: in seq order, pausing on a full sink. */
class ScriptedChat implements ChatApi {
  readonly log = new Map<string, ChatMessage[]>();
  readonly open = new Set<ScriptedSubscription>();
  /** Sink refusals seen (deliver answered false): the stream's back-pressure reached the chat. */
  pauses = 0;

  async createRoom(name: string, by: ChatMember): Promise<ChatRoom> {
    if (this.log.has(name)) throw new ConclaveError('CHAT-REQ-206', { detail: name });
    this.log.set(name, []);
    return this.room(name, by.id);
  }
  async listRooms(): Promise<ChatRoom[]> {
    return [...this.log.keys()].map((name) => this.room(name));
  }
  async getRoom(name: string): Promise<ChatRoom> {
    return this.room(name);
  }
  async join(name: string): Promise<ChatRoom> {
    return this.room(name);
  }
  async leave(name: string): Promise<ChatRoom> {
    return this.room(name);
  }
  async post(member: ChatMember, post: ChatPost): Promise<ChatPosted> {
    const room = post.room ?? '';
    const seq = this.append(room, { sender: member.id, kind: 'text', text: post.text ?? '', clientMsgId: post.clientMsgId ?? '' });
    return { room, seq, sender: member.id, clientMsgId: post.clientMsgId ?? '', duplicate: false, atMs: seq };
  }
  async claim(member: ChatMember, claim: ChatClaim): Promise<ChatClaimResult> {
    const room = claim.room ?? '';
    const seq = this.append(room, { sender: member.id, kind: 'claim', text: '', resource: claim.resource ?? '', fence: 3, ttlMs: Number(claim.ttlMs) });
    return { ok: true, room, resource: claim.resource ?? '', fence: 3, seq, holder: member.id, expiresAtMs: 2 ** 40 + Number(claim.ttlMs) };
  }
  async release(_member: ChatMember, release: ChatRelease): Promise<ChatReleased> {
    if (Number(release.fence) !== 3) throw new ConclaveError('CHAT-STATE-701', { detail: `fence ${release.fence}` });
    return { room: release.room ?? '', resource: release.resource ?? '', fence: 3, seq: 99 };
  }
  async context(name: string): Promise<ChatContext> {
    const messages = this.messages(name).slice(-2);
    return { room: name, epoch: 'e1', headSeq: this.messages(name).length, summary: 's', summaryThroughSeq: 1, messages, tokens: 5, maxMessages: 2, maxTokens: 100 };
  }
  async history(_member: ChatMember, name: string): Promise<ChatDelivery> {
    return { room: name, epoch: 'e1', messages: this.messages(name) };
  }
  async subscribe(_member: ChatMember, options: ChatSubscribeOptions, sink: ChatSink): Promise<ChatSubscription> {
    const head = this.messages(options.room).length;
    const subscription = new ScriptedSubscription(this, options, sink, head);
    this.open.add(subscription);
    subscription.pump();
    return subscription;
  }

  append(room: string, m: Partial<ChatMessage>): number {
    const messages = this.messages(room);
    const seq = messages.length + 1;
    messages.push({ room, seq, atMs: seq, ...m });
    for (const s of this.open) s.pump();
    return seq;
  }
  messages(room: string): ChatMessage[] {
    const messages = this.log.get(room);
    if (!messages) throw new ConclaveError('CHAT-REQ-201', { detail: room });
    return messages;
  }
  private room(name: string, createdBy = 'operator'): ChatRoom {
    const headSeq = this.messages(name).length;
    return { name, epoch: 'e1', headSeq, firstSeq: headSeq > 0 ? 1 : 0, members: [], createdAtMs: 1, createdBy };
  }
}

class ScriptedSubscription implements ChatSubscription {
  readonly caughtUp: Promise<void>;
  readonly closed: Promise<void>;
  private reachHead!: () => void;
  private ended!: () => void;
  private cursor: number;
  private waiting = false;
  isClosed = false;

  constructor(
    private readonly chat: ScriptedChat,
    private readonly o: ChatSubscribeOptions,
    private readonly sink: ChatSink,
    private readonly target: number,
  ) {
    this.cursor = o.afterSeq;
    this.caughtUp = new Promise((resolve) => (this.reachHead = resolve));
    this.closed = new Promise((resolve) => (this.ended = resolve));
  }
  get room(): string {
    return this.o.room;
  }
  ack(): void {}
  close(): void {
    this.isClosed = true;
    this.chat.open.delete(this);
    this.reachHead();
    this.ended();
  }
  pump(): void {
    const messages = this.chat.messages(this.o.room);
    while (!this.isClosed && !this.waiting) {
      const until = this.o.follow ? messages.length : this.target;
      if (this.cursor >= until) break;
      const batch = messages.slice(this.cursor, Math.min(until, this.cursor + 64));
      this.cursor += batch.length;
      if (!this.sink.deliver({ room: this.o.room, epoch: 'e1', messages: batch })) {
        this.chat.pauses += 1;
        this.waiting = true;
        void this.sink.writable().then(() => {
          this.waiting = false;
          this.pump();
        });
      }
    }
    if (this.cursor >= this.target) this.reachHead();
  }
}

describe('ControlCalls: the chat calls over gRPC', () => {
  let server: grpc.Server;
  let chat: ScriptedChat;
  let calls: ControlCalls;

  beforeAll(async () => {
    chat = new ScriptedChat();
    server = new grpc.Server();
    server.addService(loadConclaveProtos().conclave.v1.Control.service, createChatControlService({ chat, logger: nullLogger }));
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const address = `127.0.0.1:${port}`;
    calls = controlCallsFromClient(createControlClient(address), { address });
  });
  afterAll(() => {
    calls?.close();
    server?.forceShutdown();
  });

  it('creates, lists, posts, claims, releases and reads the context, as the operator', async () => {
    expect(await calls.createRoom('ops')).toMatchObject({ name: 'ops', headSeq: 0, createdBy: 'operator' });
    expect(await calls.postMessage({ room: 'ops', text: 'hello', clientMsgId: 'c-1' })).toEqual({
      room: 'ops', seq: 1, sender: 'operator', clientMsgId: 'c-1', duplicate: false, atMs: 1,
    });
    expect(await calls.claimResource({ room: 'ops', resource: 'deploy', ttlMs: 30_000 })).toMatchObject({
      ok: true, fence: 3, seq: 2, holder: 'operator', expiresAtMs: 2 ** 40 + 30_000,
    });
    expect(await calls.releaseResource({ room: 'ops', resource: 'deploy', fence: 3 })).toEqual({ room: 'ops', resource: 'deploy', fence: 3, seq: 99 });
    expect((await calls.listRooms()).map((r) => [r.name, r.headSeq])).toEqual([['ops', 2]]);
    const context = await calls.getRoomContext('ops');
    expect(context).toMatchObject({ room: 'ops', headSeq: 2, summary: 's', tokens: 5 });
    expect(context.messages.map((m) => [m.seq, m.kind, m.resource, m.fence])).toEqual([[1, 'text', '', 0], [2, 'claim', 'deploy', 3]]);
  });

  it('maps a coded refusal to a ControlCallError with the code and the status', async () => {
    const stale = await calls.releaseResource({ room: 'ops', resource: 'deploy', fence: 2 }).catch((err: unknown) => err);
    expect(stale).toBeInstanceOf(ControlCallError);
    expect(stale).toMatchObject({ code: 'CHAT-STATE-701', status: 'FAILED_PRECONDITION' });
    await expect(calls.createRoom('ops')).rejects.toMatchObject({ code: 'CHAT-REQ-206', status: 'ALREADY_EXISTS' });
  });

  it('followRoom without follow delivers in order from after_seq and ends at the head, under back-pressure too', async () => {
    await calls.createRoom('big');
    // About 4 MiB in all: far more than the stream's buffers, so the server waits for drain.
    const text = 'x'.repeat(2_000);
    for (let i = 0; i < 2_000; i += 1) chat.append('big', { sender: 'n-1', kind: 'text', text: `${i} ${text}` });
    const pausesBefore = chat.pauses;
    const seqs: number[] = [];
    const follow = calls.followRoom({ room: 'big', afterSeq: 10, follow: false }, (d: ChatDelivery__Output) => {
      for (const m of d.messages) seqs.push(m.seq);
    });
    await follow.done;
    expect(seqs).toEqual(Array.from({ length: 1_990 }, (_, i) => i + 11));
    expect(chat.pauses).toBeGreaterThan(pausesBefore);
    expect(chat.open.size).toBe(0);
  });

  it('followRoom with follow sees new messages until cancel(); done then resolves and the subscription is closed', async () => {
    await calls.createRoom('live');
    chat.append('live', { sender: 'operator', kind: 'text', text: 'before' });
    const texts: string[] = [];
    let notify: () => void = () => undefined;
    const follow = calls.followRoom({ room: 'live', afterSeq: 0, follow: true }, (d) => {
      for (const m of d.messages) texts.push(m.text);
      notify();
    });
    const seen = (n: number) => new Promise<void>((resolve) => {
      notify = () => texts.length >= n && resolve();
      notify();
    });
    await seen(1);
    await calls.postMessage({ room: 'live', text: 'after' });
    await seen(2);
    expect(texts).toEqual(['before', 'after']);
    follow.cancel();
    follow.cancel();
    await follow.done;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(chat.open.size).toBe(0);
  });

  it('followRoom on an unknown room rejects done with the coded error', async () => {
    const follow = calls.followRoom({ room: 'nope', afterSeq: 0, follow: true }, () => undefined);
    await expect(follow.done).rejects.toMatchObject({ code: 'CHAT-REQ-201', status: 'NOT_FOUND' });
  });
});
