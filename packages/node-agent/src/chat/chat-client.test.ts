import { mkdtemp, open, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger, type DurableFs } from '@conclave/common';
import { waitUntil } from '@conclave/testing';
import { ChatClient, type ChatClientOptions, type PostOutcome, type RoomEvent } from './chat-client.js';
import { ChatCursors } from './chat-cursors.js';
import { ChatReplyError } from './chat-error.js';
import { CHAT_OUTBOX_JOURNAL, ChatOutbox, type ChatOutboxOptions } from './chat-outbox.js';
import { FakeChatOrchestrator, chatDelivery, chatMessage, error } from './test-support.js';

const dirs: string[] = [];
const clients: ChatClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) await client.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A client over a fake orchestrator, on a data dir that a second call with the same `dir` reopens (a restart). */
async function setup(options: { dir?: string; fake?: FakeChatOrchestrator; outbox?: ChatOutboxOptions; client?: Partial<ChatClientOptions> } = {}) {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'chat-client-')));
  if (!options.dir) dirs.push(dir);
  const fake = options.fake ?? new FakeChatOrchestrator();
  const logs = captureLogger('CHAT');
  const outbox = await ChatOutbox.open(join(dir, 'chat-outbox'), { logger: logs.logger, ...options.outbox });
  const cursors = await ChatCursors.open(join(dir, 'chat', 'cursors.json'), { flushIntervalMs: 10 });
  const client = new ChatClient({ transport: fake, outbox, cursors, logger: logs.logger, retryBaseMs: 10, ...options.client });
  fake.peer = client;
  clients.push(client);
  const journal = (): Promise<string[]> => readFile(join(dir, 'chat-outbox', CHAT_OUTBOX_JOURNAL), 'utf8').then((t) => t.split('\n').filter((l) => l !== ''));
  return { dir, fake, client, outbox, cursors, logs, journal };
}

const texts = (fake: FakeChatOrchestrator, room = 'fleet'): string[] => fake.rooms.get(room)!.log.map((m) => m.text);

describe('ChatClient posts', () => {
  it('batches the posts of one tick into one frame, answers each with its seq, and never writes them to disk', async () => {
    const { fake, client, journal } = await setup();
    client.connected();
    const outcomes = await Promise.all(Array.from({ length: 300 }, (_, i) => client.post({ room: 'fleet', text: `m${i}` })));
    expect(outcomes.map((o) => (o.queued ? -1 : Number(o.posted.seq)))).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    const postFrames = fake.frames.filter((f) => f.some((r) => r.post));
    expect(postFrames).toHaveLength(1);
    expect(texts(fake)).toEqual(Array.from({ length: 300 }, (_, i) => `m${i}`));
    // A client_msg_id was generated for each, before sending: a UUID.
    expect(fake.posts()[0]?.clientMsgId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await journal()).toEqual([]);
    expect(client.pendingPosts).toBe(0);
  });

  it('queues posts on disk while offline, answers "queued" only once written, and sends them in order on connecting', async () => {
    const { fake, client, journal } = await setup();
    fake.connected = false;
    const queued = await Promise.all(['a', 'b', 'c'].map((text) => client.post({ room: 'fleet', text })));
    expect(queued.every((o) => o.queued)).toBe(true);
    expect((await journal()).map((l) => (JSON.parse(l) as { text: string }).text)).toEqual(['a', 'b', 'c']);
    fake.connected = true;
    client.connected();
    await waitUntil(() => client.pendingPosts === 0, { what: 'the queued posts to be answered' });
    expect(texts(fake)).toEqual(['a', 'b', 'c']);
    expect(fake.posts().map((p) => p.clientMsgId)).toEqual(queued.map((o) => (o as Extract<PostOutcome, { queued: true }>).clientMsgId));
  });

  it('after a crash, the next run sends what was queued, in order, exactly once even when the first session had appended it', async () => {
    const first = await setup();
    first.client.connected();
    // The orchestrator appends but its replies are lost; the session then drops.
    first.fake.dropReplies = true;
    const pending = ['x1', 'x2', 'x3'].map((text) => first.client.post({ room: 'fleet', text }));
    await waitUntil(() => first.fake.posts().length === 3, { what: 'the posts to go out' });
    first.fake.drop();
    first.client.disconnected();
    expect((await Promise.all(pending)).every((o) => o.queued)).toBe(true);
    // The agent dies here (no close): the journal is all that is left of the three posts.
    const second = await setup({ dir: first.dir, fake: first.fake });
    expect(second.client.pendingPosts).toBe(3);
    first.fake.dropReplies = false;
    first.fake.connected = true;
    second.client.connected();
    await waitUntil(() => second.client.pendingPosts === 0, { what: 'the resent posts' });
    expect(texts(first.fake)).toEqual(['x1', 'x2', 'x3']);
    expect(first.fake.posts().map((p) => p.text)).toEqual(['x1', 'x2', 'x3', 'x1', 'x2', 'x3']);
    expect(second.logs.lines.some((l) => l.includes('queued chat posts delivered') && l.includes('room=fleet') && l.includes('seq=3'))).toBe(true);
  });

  it('tells a caller "queued" (on disk) when no answer comes in time, and sends the post again on the live session', async () => {
    const { fake, client, journal } = await setup({ client: { requestTimeoutMs: 150 } });
    client.connected();
    fake.hold = true;
    const outcome = await client.post({ room: 'fleet', text: 'slow', clientMsgId: 'slow-1' });
    expect(outcome).toEqual({ queued: true, room: 'fleet', clientMsgId: 'slow-1' });
    expect((await journal()).length).toBe(1);
    await waitUntil(() => fake.posts().length >= 2, { what: 'the post to be sent again' });
    fake.hold = false;
    fake.release();
    await waitUntil(() => client.pendingPosts === 0, { what: 'the answer' });
    expect(texts(fake)).toEqual(['slow']);
  });

  it('refuses for good on a non-retryable error (the caller hears its code) and tries again on a retryable one', async () => {
    const { fake, client } = await setup();
    client.connected();
    let refusals = 0;
    fake.override = (request) => {
      if (request.post?.text === 'bad') return { requestId: 0, ...error('CHAT-REQ-203', 'chat message too large: 20000 bytes, limit 16384') } as never;
      if (request.post?.text === 'flaky' && refusals++ < 2) return { requestId: 0, ...error('ORCH-STATE-710', 'Redis is not connected', true) } as never;
      return undefined;
    };
    const bad = await client.post({ room: 'fleet', text: 'bad' }).catch((err: unknown) => err);
    expect(bad).toBeInstanceOf(ChatReplyError);
    expect(bad).toMatchObject({ code: 'CHAT-REQ-203', retryable: false });
    const flaky = await client.post({ room: 'fleet', text: 'flaky' });
    expect(flaky.queued).toBe(false);
    expect(refusals).toBe(3);
    expect(texts(fake)).toEqual(['flaky']);
    expect(client.pendingPosts).toBe(0);
  });

  it('refuses bad input before it can wait in the outbox, each with its code', async () => {
    const { client } = await setup({ outbox: { maxPosts: 2 } });
    await expect(client.post({ room: 'Fleet!', text: 'x' })).rejects.toMatchObject({ code: 'CHAT-REQ-202' });
    await expect(client.post({ room: 'fleet', text: 'x', clientMsgId: 'has space' })).rejects.toMatchObject({ code: 'CHAT-REQ-207' });
    await expect(client.post({ room: 'fleet', text: 'x', resource: 'r'.repeat(129) })).rejects.toMatchObject({ code: 'CHAT-REQ-207' });
    await expect(client.post({ room: 'fleet', text: '' })).rejects.toMatchObject({ code: 'CHAT-REQ-204' });
    await expect(client.post({ room: 'fleet', text: 'x', fence: 3 })).rejects.toMatchObject({ code: 'CHAT-REQ-204' });
    await expect(client.claim('fleet', 'a b', 1000)).rejects.toMatchObject({ code: 'CHAT-REQ-207' });
    expect(client.pendingPosts).toBe(0);
  });

  it('bounds the outbox: offline, past its limit a post is CHAT-STATE-706; the same client_msg_id is kept once', async () => {
    const { fake, client } = await setup({ outbox: { maxPosts: 2 } });
    fake.connected = false;
    await client.post({ room: 'fleet', text: 'one', clientMsgId: 'id-1' });
    await client.post({ room: 'fleet', text: 'one again', clientMsgId: 'id-1' });
    await client.post({ room: 'fleet', text: 'two' });
    await expect(client.post({ room: 'fleet', text: 'three' })).rejects.toMatchObject({ code: 'CHAT-STATE-706' });
    expect(client.pendingPosts).toBe(2);
  });

  it('a failed outbox write is CHAT-STATE-705 for the caller, logged, and the post still goes out on reconnect', async () => {
    let fail = false;
    const fs: DurableFs = {
      open: (async (path: string, flags?: string, mode?: number) => {
        if (fail) throw Object.assign(new Error('read-only file system'), { code: 'EROFS' });
        return open(path, flags, mode);
      }) as DurableFs['open'],
      rename,
      rm,
    };
    const { fake, client, logs } = await setup({ outbox: { fs } });
    fake.connected = false;
    fail = true;
    await expect(client.post({ room: 'fleet', text: 'in memory only' })).rejects.toMatchObject({ code: 'CHAT-STATE-705' });
    expect(logs.lines.some((l) => l.includes('CHAT-STATE-705') && l.includes('room=fleet'))).toBe(true);
    fake.connected = true;
    client.connected();
    await waitUntil(() => client.pendingPosts === 0, { what: 'the post kept in memory' });
    expect(texts(fake)).toEqual(['in memory only']);
  });

  it('fails claims, releases, joins, context and history at once while offline (CHAT-NET-601)', async () => {
    const { fake, client } = await setup();
    fake.connected = false;
    for (const call of [
      () => client.claim('fleet', 'gpu', 1000), () => client.release('fleet', 'gpu', 1), () => client.join('ops'),
      () => client.context('fleet'), () => client.history('fleet', 0), () => client.rooms(),
    ]) {
      await expect(call()).rejects.toMatchObject({ code: 'CHAT-NET-601' });
    }
  });
});

describe('ChatClient subscriptions', () => {
  it('subscribes to fleet and every joined room from its cursor on every session, and acks what it applied', async () => {
    const { fake, client, cursors } = await setup();
    fake.createRoom('ops');
    for (let i = 1; i <= 3; i += 1) fake.append('fleet', `f${i}`);
    client.connected();
    const joined = await client.join('ops');
    expect(joined.name).toBe('ops');
    await waitUntil(() => cursors.get('fleet')?.seq === 3, { what: 'the fleet backlog' });
    fake.append('ops', 'o1');
    await waitUntil(() => cursors.get('ops')?.seq === 1, { what: 'the ops message' });
    await waitUntil(() => fake.acks.some((a) => a.room === 'ops' && Number(a.seq) === 1));
    expect(fake.acks.filter((a) => a.room === 'fleet').map((a) => Number(a.seq)).at(-1)).toBe(3);
    // The session drops and comes back: both rooms again, each from its cursor.
    fake.drop();
    client.disconnected();
    fake.append('fleet', 'f4');
    fake.connected = true;
    client.connected();
    await waitUntil(() => cursors.get('fleet')?.seq === 4, { what: 'the missed message' });
    const subscribes = fake.requests('subscribe').map((r) => [r.subscribe?.room, Number(r.subscribe?.afterSeq), r.subscribe?.epoch]);
    expect(subscribes).toEqual([['fleet', 0, ''], ['ops', 0, 'e1'], ['fleet', 3, 'e1'], ['ops', 1, 'e1']]);
  });

  it('never applies a delivery that does not continue the cursor: a gap or a seq going back means subscribing again', async () => {
    const { fake, client, cursors } = await setup();
    client.connected();
    await waitUntil(() => fake.requests('subscribe').length === 1);
    await new Promise((r) => setImmediate(r));
    const events: RoomEvent[] = [];
    client.onRoom('fleet', (e) => events.push(e));
    const m = (seq: number) => chatMessage('fleet', seq, `t${seq}`);
    client.receiveDelivery(chatDelivery('fleet', 'e1', [m(1), m(2)]));
    expect(cursors.get('fleet')).toEqual({ epoch: 'e1', seq: 2 });
    // A gap: 4 after 2.
    client.receiveDelivery(chatDelivery('fleet', 'e1', [m(4)]));
    expect(cursors.get('fleet')?.seq).toBe(2);
    await waitUntil(() => fake.requests('subscribe').length === 2, { what: 'a new subscription' });
    expect(Number(fake.requests('subscribe')[1]!.subscribe?.afterSeq)).toBe(2);
    expect(events.flatMap((e) => e.messages.map((x) => Number(x.seq)))).toEqual([1, 2]);
    // Redis lost its tail: seq 2 comes again, for another message. The orchestrator (fake: its log is
    // empty, so a cursor at 2 is ahead of it) answers the resubscription with a resynchronisation.
    await new Promise((r) => setImmediate(r));
    client.receiveDelivery(chatDelivery('fleet', 'e1', [m(2)]));
    await waitUntil(() => fake.requests('subscribe').length === 3, { what: 'another subscription' });
    await waitUntil(() => events.some((e) => e.resync), { what: 'the resynchronisation' });
    expect(cursors.get('fleet')).toEqual({ epoch: 'e1', seq: 0 });
    expect(events.find((e) => e.resync)?.resync?.code).toBe('CHAT-STATE-703');
  });

  it('a first subscription (no cursor) starts wherever the log still starts: a trimmed log is not a gap', async () => {
    const { fake, client, cursors } = await setup();
    client.connected();
    await waitUntil(() => fake.requests('subscribe').length === 1);
    await new Promise((r) => setImmediate(r));
    client.receiveDelivery(chatDelivery('fleet', 'e1', [chatMessage('fleet', 5001, 'oldest kept'), chatMessage('fleet', 5002, 'next')]));
    expect(cursors.get('fleet')).toEqual({ epoch: 'e1', seq: 5002 });
    expect(fake.requests('subscribe')).toHaveLength(1);
  });

  it('a resynchronisation replaces the cursor with the snapshot head and goes on from there', async () => {
    const { fake, client, cursors, logs } = await setup();
    client.connected();
    await waitUntil(() => fake.requests('subscribe').length === 1);
    const snapshot = { room: 'fleet', epoch: 'e9', headSeq: 40, summary: 's', summaryThroughSeq: 30, messages: [chatMessage('fleet', 40, 'last')], tokens: 3, maxMessages: 50, maxTokens: 2048 };
    client.receiveDelivery(chatDelivery('fleet', 'e9', [chatMessage('fleet', 41, 'next')], { snapshot, resyncReason: 'trimmed', code: 'CHAT-STATE-703' }));
    expect(cursors.get('fleet')).toEqual({ epoch: 'e9', seq: 41 });
    expect(logs.lines.some((l) => l.includes('CHAT-STATE-703') && l.includes('room=fleet') && l.includes('seq=40'))).toBe(true);
    // Another epoch without a snapshot is not applied.
    client.receiveDelivery(chatDelivery('fleet', 'e1', [chatMessage('fleet', 42, 'old epoch')]));
    expect(cursors.get('fleet')?.seq).toBe(41);
  });

  it('keeps its cursors across a restart: the next run subscribes from them', async () => {
    const first = await setup();
    for (let i = 1; i <= 5; i += 1) first.fake.append('fleet', `f${i}`);
    first.client.connected();
    await waitUntil(() => first.cursors.get('fleet')?.seq === 5);
    await first.client.close();
    first.fake.drop();
    const fake = new FakeChatOrchestrator();
    for (let i = 1; i <= 6; i += 1) fake.append('fleet', `f${i}`);
    const second = await setup({ dir: first.dir, fake });
    second.client.connected();
    await waitUntil(() => second.cursors.get('fleet')?.seq === 6);
    expect(fake.requests('subscribe').map((r) => [Number(r.subscribe?.afterSeq), r.subscribe?.epoch])).toEqual([[5, 'e1']]);
  });
});
