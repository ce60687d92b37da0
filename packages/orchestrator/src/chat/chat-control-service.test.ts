// The chat handlers of the Control API over a fake ChatApi: who they act as, how FollowRoom
// ends, pauses and closes its subscription, and the coded statuses of its failures.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ConclaveError, nullLogger } from '@conclave/common';
import type { ChatClaim, ChatClaimResult, ChatContext, ChatDelivery, ChatPost, ChatPosted, ChatRelease, ChatReleased, ChatRoom } from '@conclave/protocol';
import type { StateStoreGuard } from '../state-store-guard.js';
import { OPERATOR_MEMBER } from './chat-api.js';
import type { ChatApi, ChatMember, ChatSink, ChatSubscribeOptions, ChatSubscription } from './chat-api.js';
import { createChatControlService } from './chat-control-service.js';

class FakeSubscription implements ChatSubscription {
  closeCount = 0;
  readonly caughtUp: Promise<void>;
  readonly closed: Promise<void>;
  reachHead!: () => void;
  /** The orchestrator ends the subscription (its shutdown). */
  end!: () => void;

  constructor(readonly room: string) {
    this.caughtUp = new Promise((resolve) => (this.reachHead = resolve));
    this.closed = new Promise((resolve) => (this.end = resolve));
  }
  ack(): void {}
  close(): void {
    this.closeCount += 1;
  }
}

const room = (name: string, headSeq = 0): ChatRoom => ({ name, epoch: 'e1', headSeq, firstSeq: headSeq > 0 ? 1 : 0, members: [], createdAtMs: 1, createdBy: 'operator' });

/** Records every call with the member it was made as; `subscribe` hands out FakeSubscriptions. */
class FakeChat implements ChatApi {
  readonly calls: Array<{ op: string; member?: ChatMember; args: unknown }> = [];
  readonly subscriptions: FakeSubscription[] = [];
  sink: ChatSink | undefined;
  subscribeOptions: ChatSubscribeOptions | undefined;
  /** Set: subscribe waits for this before it resolves. */
  subscribeGate: Promise<void> | undefined;
  failWith: Error | undefined;
  headSeq = 10;

  async createRoom(name: string, by: ChatMember): Promise<ChatRoom> {
    this.record('createRoom', by, name);
    return room(name);
  }
  async listRooms(): Promise<ChatRoom[]> {
    this.record('listRooms', undefined, undefined);
    return [room('fleet', 3), room('ops')];
  }
  async getRoom(name: string): Promise<ChatRoom> {
    this.record('getRoom', undefined, name);
    return room(name, this.headSeq);
  }
  async join(name: string, member: ChatMember): Promise<ChatRoom> {
    this.record('join', member, name);
    return room(name);
  }
  async leave(name: string, member: ChatMember): Promise<ChatRoom> {
    this.record('leave', member, name);
    return room(name);
  }
  async post(member: ChatMember, post: ChatPost): Promise<ChatPosted> {
    this.record('post', member, post);
    return { room: post.room ?? '', seq: 11, sender: member.id, clientMsgId: post.clientMsgId ?? '', duplicate: false, atMs: 5 };
  }
  async claim(member: ChatMember, claim: ChatClaim): Promise<ChatClaimResult> {
    this.record('claim', member, claim);
    return { ok: false, room: claim.room ?? '', resource: claim.resource ?? '', fence: 0, seq: 4, holder: 'n-1', expiresAtMs: 9, code: 'CHAT-STATE-702' };
  }
  async release(member: ChatMember, release: ChatRelease): Promise<ChatReleased> {
    this.record('release', member, release);
    return { room: release.room ?? '', resource: release.resource ?? '', fence: release.fence ?? 0, seq: 12 };
  }
  async context(name: string, member: ChatMember): Promise<ChatContext> {
    this.record('context', member, name);
    return { room: name, epoch: 'e1', headSeq: 10, summary: '', summaryThroughSeq: 0, messages: [], tokens: 0, maxMessages: 50, maxTokens: 2048 };
  }
  async history(member: ChatMember, name: string): Promise<ChatDelivery> {
    this.record('history', member, name);
    return { room: name, epoch: 'e1', messages: [] };
  }
  async subscribe(member: ChatMember, options: ChatSubscribeOptions, sink: ChatSink): Promise<ChatSubscription> {
    this.record('subscribe', member, options);
    await this.subscribeGate;
    this.sink = sink;
    this.subscribeOptions = options;
    const subscription = new FakeSubscription(options.room);
    this.subscriptions.push(subscription);
    return subscription;
  }
  private record(op: string, member: ChatMember | undefined, args: unknown): void {
    if (this.failWith) throw this.failWith;
    this.calls.push({ op, ...(member ? { member } : {}), args });
  }
}

/** A FollowRoom call: what it was sent, its end, the status it was failed with. */
function fakeStream(request: { room: string; afterSeq?: number; epoch?: string; follow: boolean }) {
  const written: ChatDelivery[] = [];
  let ends = 0;
  let accept = true;
  const call = Object.assign(new EventEmitter(), {
    request: { afterSeq: 0, epoch: '', ...request },
    writableNeedDrain: false,
    write(delivery: ChatDelivery): boolean {
      if (ends > 0) throw new Error('write after end');
      written.push(delivery);
      call.writableNeedDrain = !accept;
      return accept;
    },
    end(): void {
      ends += 1;
    },
  });
  const errors: Array<{ code?: number; details?: string }> = [];
  call.on('error', (err: { code?: number; details?: string }) => errors.push(err));
  return {
    call,
    written,
    errors,
    ends: () => ends,
    /** From now on write() answers false, as grpc-js does when its buffer is full. */
    fill: () => {
      accept = false;
    },
    drain: () => {
      accept = true;
      call.writableNeedDrain = false;
      call.emit('drain');
    },
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
const message = (seq: number) => ({ room: 'ops', seq, sender: 'operator', kind: 'text', text: `m${seq}`, atMs: seq });

type Handler = (call: unknown, callback?: (err: unknown, value?: unknown) => void) => void;

function service(chat: FakeChat, stateStore?: StateStoreGuard) {
  const handlers = createChatControlService({ chat, logger: nullLogger, ...(stateStore ? { stateStore } : {}) });
  const unary = (name: keyof typeof handlers, request: unknown) =>
    new Promise<{ err: unknown; value: unknown }>((resolve) => {
      (handlers[name] as unknown as Handler)({ request }, (err, value) => resolve({ err, value }));
    });
  const follow = (stream: ReturnType<typeof fakeStream>) => (handlers.FollowRoom as unknown as Handler)(stream.call);
  return { unary, follow };
}

describe('chat Control handlers', () => {
  it('act as the operator whatever the request holds, and pass the request on', async () => {
    const chat = new FakeChat();
    const { unary } = service(chat);
    expect((await unary('CreateRoom', { room: 'ops' })).value).toMatchObject({ name: 'ops' });
    expect((await unary('ListRooms', {})).value).toEqual({ rooms: [room('fleet', 3), room('ops')] });
    const post = { room: 'ops', text: 'hi', clientMsgId: 'c-1', resource: '', fence: 0 };
    expect((await unary('PostMessage', post)).value).toMatchObject({ seq: 11, sender: 'operator', clientMsgId: 'c-1' });
    expect((await unary('ClaimResource', { room: 'ops', resource: 'deploy', ttlMs: 30_000 })).value).toMatchObject({ ok: false, holder: 'n-1', code: 'CHAT-STATE-702' });
    expect((await unary('ReleaseResource', { room: 'ops', resource: 'deploy', fence: 7 })).value).toMatchObject({ fence: 7, seq: 12 });
    expect((await unary('GetRoomContext', { room: 'ops' })).value).toMatchObject({ room: 'ops', headSeq: 10 });
    expect(chat.calls.filter((c) => c.op !== 'listRooms').map((c) => c.member)).toEqual(Array(5).fill(OPERATOR_MEMBER));
    expect(chat.calls.find((c) => c.op === 'post')?.args).toEqual(post);
  });

  it('answer a chat error with its status and code first in the details', async () => {
    const chat = new FakeChat();
    chat.failWith = new ConclaveError('CHAT-STATE-701', { detail: 'fence 3 on deploy' });
    const { err } = await service(chat).unary('ReleaseResource', { room: 'ops', resource: 'deploy', fence: 3 });
    expect(err).toMatchObject({ code: 9, details: expect.stringMatching(/^CHAT-STATE-701 stale fencing token/) as unknown });
  });

  it('refuse at once, ORCH-STATE-710, while Redis is away', async () => {
    const chat = new FakeChat();
    const away: StateStoreGuard = () => Promise.reject(new ConclaveError('ORCH-STATE-710', { detail: 'Redis connection is reconnecting' }));
    const { err } = await service(chat, away).unary('PostMessage', { room: 'ops', text: 'hi' });
    expect(err).toMatchObject({ code: 14, details: expect.stringMatching(/^ORCH-STATE-710 /) as unknown });
    expect(chat.calls).toEqual([]);
  });
});

describe('FollowRoom', () => {
  it('without follow: subscribes as the operator without acks, writes the deliveries in order and ends once at the head', async () => {
    const chat = new FakeChat();
    const stream = fakeStream({ room: 'ops', afterSeq: 4, follow: false });
    service(chat).follow(stream);
    await tick();
    expect(chat.calls.find((c) => c.op === 'subscribe')).toEqual({
      op: 'subscribe', member: OPERATOR_MEMBER, args: { room: 'ops', afterSeq: 4, epoch: '', follow: false, acks: false },
    });
    const sink = chat.sink!;
    expect(sink.deliver({ room: 'ops', messages: [message(5), message(6)] })).toBe(true);
    expect(sink.deliver({ room: 'ops', messages: [message(7)] })).toBe(true);
    expect(stream.ends()).toBe(0);
    chat.subscriptions[0]!.reachHead();
    await tick();
    expect(stream.written.flatMap((d) => d.messages?.map((m) => m.seq))).toEqual([5, 6, 7]);
    expect(stream.ends()).toBe(1);
    expect(chat.subscriptions[0]!.closeCount).toBe(1);
    // A delivery racing the end is not written.
    expect(sink.deliver({ room: 'ops', messages: [message(8)] })).toBe(false);
    expect(stream.written).toHaveLength(2);
  });

  it('with follow: stays open past the head; a cancel closes the subscription and nothing more is written', async () => {
    const chat = new FakeChat();
    const stream = fakeStream({ room: 'ops', follow: true });
    service(chat).follow(stream);
    await tick();
    chat.subscriptions[0]!.reachHead();
    await tick();
    expect(stream.ends()).toBe(0);
    chat.sink!.deliver({ room: 'ops', messages: [message(11)] });
    stream.call.emit('cancelled', 'cancelled');
    stream.call.emit('close');
    expect(chat.subscriptions[0]!.closeCount).toBe(1);
    expect(chat.sink!.deliver({ room: 'ops', messages: [message(12)] })).toBe(false);
    expect(stream.written).toHaveLength(1);
    expect(stream.ends()).toBe(0);
  });

  it('passes the stream back-pressure on: deliver answers false, writable resolves on drain only', async () => {
    const chat = new FakeChat();
    const stream = fakeStream({ room: 'ops', follow: true });
    service(chat).follow(stream);
    await tick();
    const sink = chat.sink!;
    await sink.writable();
    stream.fill();
    expect(sink.deliver({ room: 'ops', messages: [message(1)] })).toBe(false);
    let writable = false;
    void sink.writable().then(() => (writable = true));
    await tick();
    expect(writable).toBe(false);
    stream.drain();
    await tick();
    expect(writable).toBe(true);
  });

  it('a subscription that arrives after the caller cancelled is closed at once', async () => {
    const chat = new FakeChat();
    let open: () => void = () => undefined;
    chat.subscribeGate = new Promise((resolve) => (open = resolve));
    const stream = fakeStream({ room: 'ops', follow: true });
    service(chat).follow(stream);
    stream.call.emit('cancelled', 'cancelled');
    open();
    await tick();
    expect(chat.subscriptions[0]!.closeCount).toBe(1);
  });

  it('fails with the coded status when subscribe rejects, and never ends the call as a success', async () => {
    const chat = new FakeChat();
    chat.failWith = new ConclaveError('CHAT-REQ-201', { detail: 'nope' });
    const stream = fakeStream({ room: 'nope', follow: true });
    service(chat).follow(stream);
    await tick();
    expect(stream.errors).toEqual([expect.objectContaining({ code: 5, details: expect.stringMatching(/^CHAT-REQ-201 unknown room/) as unknown })]);
    expect(stream.ends()).toBe(0);
  });

  it('a subscription the orchestrator ends (its shutdown) ends the call UNAVAILABLE, so that the follower resumes', async () => {
    const chat = new FakeChat();
    const stream = fakeStream({ room: 'ops', follow: true });
    service(chat).follow(stream);
    await tick();
    chat.subscriptions[0]!.end();
    await tick();
    expect(stream.errors).toEqual([expect.objectContaining({ code: 14, details: expect.stringMatching(/^CHAT-NET-601 /) as unknown })]);
    expect(stream.ends()).toBe(0);
  });

  it('fails with ORCH-STATE-710 while Redis is away, without subscribing', async () => {
    const chat = new FakeChat();
    const away: StateStoreGuard = () => Promise.reject(new ConclaveError('ORCH-STATE-710', { detail: 'Redis connection is reconnecting' }));
    const stream = fakeStream({ room: 'ops', follow: true });
    service(chat, away).follow(stream);
    await tick();
    expect(stream.errors).toEqual([expect.objectContaining({ code: 14 })]);
    expect(chat.calls).toEqual([]);
  });

  it('passes the after_seq and epoch through as they came: the chat decides what a position past the head means', async () => {
    const chat = new FakeChat();
    chat.headSeq = 10;
    service(chat).follow(fakeStream({ room: 'ops', afterSeq: 14, follow: true }));
    await tick();
    expect(chat.subscribeOptions).toMatchObject({ afterSeq: 14, epoch: '' });
    service(chat).follow(fakeStream({ room: 'ops', afterSeq: 14, epoch: 'e1', follow: true }));
    await tick();
    expect(chat.subscribeOptions).toMatchObject({ afterSeq: 14, epoch: 'e1' });
  });
});
