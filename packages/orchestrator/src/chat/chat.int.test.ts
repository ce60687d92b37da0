import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError, captureLogger } from '@conclave/common';
import type { ChatDelivery, ChatMessage } from '@conclave/protocol';
import { startRedis, waitUntil } from '@conclave/testing';
import type { RedisServerHandle } from '@conclave/testing';
import { redisKeys } from '../redis-keys.js';
import type { ChatMember, ChatSink, ChatSubscription } from './chat-api.js';
import { OPERATOR_MEMBER } from './chat-api.js';
import { Chat, FLEET_ROOM } from './chat.js';

const nodeA: ChatMember = { id: 'node-a', name: 'alpha', role: 'node' };
const nodeB: ChatMember = { id: 'node-b', role: 'node' };
const stranger: ChatMember = { id: 'node-x', role: 'node' };

/** A sink that records every delivery and acknowledges nothing on its own. */
function recordingSink(): ChatSink & { deliveries: ChatDelivery[]; messages: () => ChatMessage[] } {
  const deliveries: ChatDelivery[] = [];
  return {
    deliveries,
    deliver: (d) => {
      deliveries.push(d);
      return true;
    },
    writable: () => Promise.resolve(),
    messages: () => deliveries.flatMap((d) => d.messages ?? []),
  };
}

async function codeOf(work: Promise<unknown>): Promise<string> {
  try {
    await work;
  } catch (err) {
    if (err instanceof ConclaveError) return err.code;
    throw err;
  }
  throw new Error('expected a coded rejection');
}

let roomCount = 0;
const freshRoom = () => `room-${process.pid}-${(roomCount += 1)}`;

describe('Chat on a real Redis', () => {
  let server: RedisServerHandle;
  let redis: Redis;
  let chat: Chat;
  const captured = captureLogger('ORCH');

  beforeAll(async () => {
    server = await startRedis();
    // Auto-pipelined, as the orchestrator's chat connection is.
    redis = new Redis(server.url, { enableAutoPipelining: true });
    chat = new Chat(redis, captured.logger, { logMaxLen: 10_000, maxMessageBytes: 1024 });
    await chat.ensureFleet();
    await chat.join(FLEET_ROOM, nodeA);
    await chat.join(FLEET_ROOM, nodeB);
  });
  afterAll(async () => {
    chat?.close();
    await redis?.quit();
    await server?.stop();
  });

  it('gives concurrent posters one gap-free order, the same for every follower', async () => {
    const room = freshRoom();
    await chat.createRoom(room, OPERATOR_MEMBER);
    await chat.join(room, nodeA);
    await chat.join(room, nodeB);
    const follower1 = recordingSink();
    const follower2 = recordingSink();
    const sub1 = await chat.subscribe(nodeA, { room, afterSeq: 0, follow: true, acks: false }, follower1);
    const sub2 = await chat.subscribe(OPERATOR_MEMBER, { room, afterSeq: 0, follow: true, acks: false }, follower2);
    const posters = [nodeA, nodeB, OPERATOR_MEMBER];
    await Promise.all(posters.map(async (member) => {
      for (let i = 0; i < 50; i += 1) await chat.post(member, { room, text: `${member.id} ${i}` });
    }));
    const head = Number((await chat.getRoom(room)).headSeq);
    expect(head).toBe(2 + 150);
    await waitUntil(() => follower1.messages().length === head && follower2.messages().length === head);
    const seqs = follower1.messages().map((m) => Number(m.seq));
    expect(seqs).toEqual(Array.from({ length: head }, (_, i) => i + 1));
    expect(follower2.messages()).toEqual(follower1.messages());
    // Each poster's messages keep their own order.
    for (const member of posters) {
      const mine = follower1.messages().filter((m) => m.sender === member.id && m.kind === 'text').map((m) => m.text);
      expect(mine).toEqual(Array.from({ length: 50 }, (_, i) => `${member.id} ${i}`));
    }
    sub1.close();
    sub2.close();
  });

  it('appends a retried client_msg_id once and answers with the first seq', async () => {
    const first = await chat.post(nodeA, { room: FLEET_ROOM, text: 'hello', clientMsgId: 'retry-1' });
    const again = await chat.post(nodeA, { room: FLEET_ROOM, text: 'hello', clientMsgId: 'retry-1' });
    expect(again).toMatchObject({ seq: first.seq, duplicate: true });
    // The id is the sender's: another member's same id is its own message.
    const other = await chat.post(nodeB, { room: FLEET_ROOM, text: 'hello', clientMsgId: 'retry-1' });
    expect(other.duplicate).toBe(false);
    expect(Number(other.seq)).toBeGreaterThan(Number(first.seq));
    const log = await redis.xrange(redisKeys.chatLog(FLEET_ROOM), '-', '+');
    expect(log.filter(([, fields]) => fields.includes('retry-1'))).toHaveLength(2);
  });

  it('loads its scripts again when Redis lost them (a restart), keeping the posts in order', async () => {
    await redis.script('FLUSH');
    const posted = await Promise.all([1, 2, 3].map((i) => chat.post(nodeA, { room: FLEET_ROOM, text: `after flush ${i}` })));
    const seqs = posted.map((p) => Number(p.seq));
    expect(seqs).toEqual([seqs[0], (seqs[0] as number) + 1, (seqs[0] as number) + 2]);
    const log = await chat.history(OPERATOR_MEMBER, FLEET_ROOM, (seqs[0] as number) - 1, 3);
    expect(log.messages?.map((m) => m.text)).toEqual(['after flush 1', 'after flush 2', 'after flush 3']);
  });

  it('refuses bad input with coded errors and appends nothing', async () => {
    const before = Number((await chat.getRoom(FLEET_ROOM)).headSeq);
    expect(await codeOf(chat.post(nodeA, { room: 'no-such-room', text: 'x' }))).toBe('CHAT-REQ-201');
    expect(await codeOf(chat.post(nodeA, { room: 'Bad{Room}', text: 'x' }))).toBe('CHAT-REQ-202');
    expect(await codeOf(chat.post(nodeA, { room: FLEET_ROOM, text: 'x'.repeat(1025) }))).toBe('CHAT-REQ-203');
    expect(await codeOf(chat.post(nodeA, { room: FLEET_ROOM, text: '' }))).toBe('CHAT-REQ-204');
    expect(await codeOf(chat.post(nodeA, { room: FLEET_ROOM, text: 'x', clientMsgId: 'has space' }))).toBe('CHAT-REQ-207');
    expect(await codeOf(chat.post(stranger, { room: FLEET_ROOM, text: 'x' }))).toBe('CHAT-AUTH-501');
    expect(await codeOf(chat.claim(nodeA, { room: FLEET_ROOM, resource: 'r', ttlMs: 0 }))).toBe('CHAT-REQ-205');
    expect(await codeOf(chat.claim(nodeA, { room: FLEET_ROOM, resource: 'r', ttlMs: 10 * 24 * 3600 * 1000 }))).toBe('CHAT-REQ-205');
    expect(await codeOf(chat.createRoom(FLEET_ROOM, OPERATOR_MEMBER))).toBe('CHAT-REQ-206');
    expect(await codeOf(chat.subscribe(stranger, { room: FLEET_ROOM, afterSeq: 0, follow: true, acks: true }, recordingSink()))).toBe('CHAT-AUTH-501');
    expect(Number((await chat.getRoom(FLEET_ROOM)).headSeq)).toBe(before);
  });

  it('has exactly one winner among 50 concurrent claims, with fences that only grow', async () => {
    const room = freshRoom();
    await chat.createRoom(room, OPERATOR_MEMBER);
    const claimants: ChatMember[] = Array.from({ length: 50 }, (_, i) => ({ id: `claimant-${i}`, role: 'node' as const }));
    for (const member of claimants) await chat.join(room, member);
    const results = await Promise.all(claimants.map((member) => chat.claim(member, { room, resource: 'task-1', ttlMs: 60_000 })));
    const winners = results.filter((r) => r.ok);
    expect(winners).toHaveLength(1);
    const winner = winners[0]!;
    for (const lost of results.filter((r) => !r.ok)) {
      expect(lost).toMatchObject({ holder: winner.holder, seq: winner.seq, code: 'CHAT-STATE-702' });
    }
    const holder = claimants.find((m) => m.id === winner.holder)!;
    // A post under the claim with its fence is taken; with another fence it is refused.
    await chat.post(holder, { room, text: 'working on it', resource: 'task-1', fence: winner.fence });
    expect(await codeOf(chat.post(holder, { room, text: 'x', resource: 'task-1', fence: Number(winner.fence) + 7 }))).toBe('CHAT-STATE-701');
    // Only the holder releases, and only with its fence.
    expect(await codeOf(chat.release(claimants[0]!.id === holder.id ? claimants[1]! : claimants[0]!, { room, resource: 'task-1', fence: winner.fence }))).toBe('CHAT-STATE-701');
    expect(await codeOf(chat.release(holder, { room, resource: 'task-1', fence: Number(winner.fence) + 5 }))).toBe('CHAT-STATE-701');
    await chat.release(holder, { room, resource: 'task-1', fence: winner.fence });
    expect(await codeOf(chat.release(holder, { room, resource: 'task-1', fence: winner.fence }))).toBe('CHAT-STATE-704');
    // The next claim gets a larger fence; the old holder's fence is stale for good.
    const next = await chat.claim(claimants[2]!, { room, resource: 'task-1', ttlMs: 60_000 });
    expect(next.ok).toBe(true);
    expect(Number(next.fence)).toBeGreaterThan(Number(winner.fence));
    expect(await codeOf(chat.post(holder, { room, text: 'late', resource: 'task-1', fence: winner.fence }))).toBe('CHAT-STATE-701');
  });

  it('frees an expired claim and logs the expiry before the next claim', async () => {
    const room = freshRoom();
    await chat.createRoom(room, OPERATOR_MEMBER);
    const first = await chat.claim(OPERATOR_MEMBER, { room, resource: 'floor', ttlMs: 150 });
    expect(first.ok).toBe(true);
    await waitUntil(async () => (await redis.exists(redisKeys.chatClaim(room, 'floor'))) === 0);
    const second = await chat.claim(nodeA, { room, resource: 'floor', ttlMs: 150 }).catch(() => undefined);
    // nodeA is not a member of this room: the claim is refused, and the operator claims instead.
    expect(second).toBeUndefined();
    const third = await chat.claim(OPERATOR_MEMBER, { room, resource: 'floor', ttlMs: 1000 });
    expect(third.ok).toBe(true);
    const log = await chat.history(OPERATOR_MEMBER, room, 0, 10);
    expect(log.messages?.map((m) => [m.kind, m.resource, Number(m.fence)])).toEqual([
      ['claim', 'floor', Number(first.fence)],
      ['expire', 'floor', Number(first.fence)],
      ['claim', 'floor', Number(third.fence)],
    ]);
  });

  it('resumes a member exactly after its cursor, and from a trimmed point with a snapshot', async () => {
    const small = new Chat(redis, captured.logger, { logMaxLen: 10, contextMessages: 5 });
    const room = freshRoom();
    await small.createRoom(room, OPERATOR_MEMBER);
    for (let i = 1; i <= 5; i += 1) await small.post(OPERATOR_MEMBER, { room, text: `m${i}` });
    const resumed = recordingSink();
    const sub: ChatSubscription = await small.subscribe(OPERATOR_MEMBER, { room, afterSeq: 3, epoch: (await small.getRoom(room)).epoch ?? '', follow: false, acks: false }, resumed);
    await sub.caughtUp;
    expect(resumed.messages().map((m) => m.text)).toEqual(['m4', 'm5']);
    // Push the log well past MAXLEN ~ 10 so that Redis really trims.
    for (let i = 6; i <= 400; i += 1) await small.post(OPERATOR_MEMBER, { room, text: `m${i}` });
    const info = await small.getRoom(room);
    expect(Number(info.firstSeq)).toBeGreaterThan(4);
    const trimmed = recordingSink();
    const sub2 = await small.subscribe(OPERATOR_MEMBER, { room, afterSeq: 3, epoch: info.epoch ?? '', follow: true, acks: false }, trimmed);
    await waitUntil(() => trimmed.deliveries.length > 0);
    const first = trimmed.deliveries[0]!;
    expect(first).toMatchObject({ resyncReason: 'trimmed', code: 'CHAT-STATE-703' });
    expect(first.snapshot?.messages?.map((m) => m.text)).toEqual(['m396', 'm397', 'm398', 'm399', 'm400']);
    expect(Number(first.snapshot?.headSeq)).toBe(400);
    await small.post(OPERATOR_MEMBER, { room, text: 'after' });
    await waitUntil(() => trimmed.messages().length === 1);
    expect(trimmed.messages()[0]).toMatchObject({ seq: 401, text: 'after' });
    sub2.close();
    small.close();
  });

  it('detects a log that went back: a cursor ahead of the head resynchronises under a new epoch', async () => {
    const room = freshRoom();
    await chat.createRoom(room, OPERATOR_MEMBER);
    // A follower is live: this orchestrator sees every seq it hands out.
    const live = recordingSink();
    const liveSub = await chat.subscribe(OPERATOR_MEMBER, { room, afterSeq: 0, follow: true, acks: false }, live);
    for (let i = 1; i <= 5; i += 1) await chat.post(OPERATOR_MEMBER, { room, text: `m${i}` });
    await waitUntil(() => live.messages().length === 5);
    const { epoch } = await chat.getRoom(room);
    // Redis loses its tail: the last two entries and the counter go back to 3.
    await redis.xdel(redisKeys.chatLog(room), '4-0', '5-0');
    await redis.set(redisKeys.chatSeq(room), 3);
    const member = recordingSink();
    const sub = await chat.subscribe(OPERATOR_MEMBER, { room, afterSeq: 5, epoch: epoch ?? '', follow: true, acks: false }, member);
    await waitUntil(() => member.deliveries.length > 0);
    expect(member.deliveries[0]).toMatchObject({ resyncReason: 'regressed', code: 'CHAT-STATE-703' });
    const renewed = await chat.getRoom(room);
    expect(renewed.epoch).not.toBe(epoch);
    expect(member.deliveries[0]?.epoch).toBe(renewed.epoch);
    // The live follower is told too, under the new epoch.
    await waitUntil(() => live.deliveries.some((d) => d.snapshot && d.epoch === renewed.epoch));
    // The counter never hands out a seq the stream already used: XADD would refuse it, the script moves past.
    const posted = await chat.post(OPERATOR_MEMBER, { room, text: 'new' });
    expect(Number(posted.seq)).toBe(6);
    sub.close();
    liveSub.close();
  });

  it('resynchronises a member whose cursor is past the head, without renewing the epoch on its word alone', async () => {
    const room = freshRoom();
    await chat.createRoom(room, OPERATOR_MEMBER);
    await chat.join(room, nodeA);
    for (let i = 1; i <= 3; i += 1) await chat.post(OPERATOR_MEMBER, { room, text: `m${i}` });
    const { epoch } = await chat.getRoom(room);
    const member = recordingSink();
    const sub = await chat.subscribe(nodeA, { room, afterSeq: 1_000_000, epoch: epoch ?? '', follow: true, acks: true }, member);
    await waitUntil(() => member.deliveries.length > 0);
    expect(member.deliveries[0]).toMatchObject({ resyncReason: 'regressed', epoch });
    expect((await chat.getRoom(room)).epoch).toBe(epoch);
    sub.close();
  });

  it('moves live followers to a recreated room\'s new epoch (Redis lost it) instead of passing its seqs as the old log\'s', async () => {
    const room = freshRoom();
    await chat.createRoom(room, OPERATOR_MEMBER);
    for (let i = 1; i <= 4; i += 1) await chat.post(OPERATOR_MEMBER, { room, text: `old ${i}` });
    const follower = recordingSink();
    const sub = await chat.subscribe(OPERATOR_MEMBER, { room, afterSeq: 0, follow: true, acks: false }, follower);
    await waitUntil(() => follower.messages().length === 4);
    const old = await chat.getRoom(room);
    await redis.del(redisKeys.chatMeta(room), redisKeys.chatSeq(room), redisKeys.chatLog(room));
    await chat.createRoom(room, OPERATOR_MEMBER);
    await chat.post(OPERATOR_MEMBER, { room, text: 'new 1' });
    await waitUntil(() => follower.deliveries.some((d) => d.resyncReason === 'epoch'));
    const resync = follower.deliveries.find((d) => d.resyncReason === 'epoch');
    expect(resync?.epoch).not.toBe(old.epoch);
    expect(resync?.snapshot?.messages?.map((m) => m.text)).toEqual(['new 1']);
    sub.close();
  });

  it('pauses a member that stops acknowledging, and catches it up from Redis when it acks', async () => {
    const room = freshRoom();
    await chat.createRoom(room, OPERATOR_MEMBER);
    const slow = recordingSink();
    const sub = await chat.subscribe(OPERATOR_MEMBER, { room, afterSeq: 0, follow: true, acks: true }, slow);
    const total = 1_500;
    await Promise.all(Array.from({ length: total }, (_, i) => chat.post(OPERATOR_MEMBER, { room, text: `m${i + 1}` })));
    await waitUntil(() => slow.messages().length >= 1_024);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(slow.messages()).toHaveLength(1_024);
    sub.ack(1_024);
    await waitUntil(() => slow.messages().length === total);
    expect(slow.messages().map((m) => Number(m.seq))).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    sub.close();
  });

  it('writes CHAT- lines that carry room and seq', () => {
    const chatLines = captured.jsonLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.prefix === 'CHAT');
    expect(chatLines.length).toBeGreaterThan(0);
    for (const line of chatLines) {
      expect(line).toHaveProperty('room');
      expect(line).toHaveProperty('seq');
    }
  });
});
