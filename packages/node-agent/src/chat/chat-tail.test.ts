import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import type { ChatDelivery__Output, ChatMessage__Output } from '@conclave/protocol';
import { waitUntil } from '@conclave/testing';
import { ChatClient, type RoomListener } from './chat-client.js';
import { ChatCursors } from './chat-cursors.js';
import { ChatOutbox } from './chat-outbox.js';
import { ChatTail, TAIL_PAGE, type TailSink, type TailSource } from './chat-tail.js';
import { FakeChatOrchestrator, chatDelivery, chatMessage } from './test-support.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function connectedClient() {
  const dir = await mkdtemp(join(tmpdir(), 'chat-tail-'));
  const fake = new FakeChatOrchestrator();
  const client = new ChatClient({
    transport: fake, logger: nullLogger,
    outbox: await ChatOutbox.open(join(dir, 'outbox')), cursors: await ChatCursors.open(join(dir, 'cursors.json')),
  });
  fake.peer = client;
  client.connected();
  cleanups.push(async () => {
    await client.close();
    await rm(dir, { recursive: true, force: true });
  });
  await waitUntil(() => fake.requests('subscribe').length === 1);
  return { fake, client };
}

/** A reader whose speed the test sets: while `slow`, it reports itself behind. */
function sink() {
  const seqs: number[] = [];
  const resyncs: ChatDelivery__Output[] = [];
  let drained: Array<() => void> = [];
  const s = {
    seqs, resyncs, slow: false,
    message: (m: ChatMessage__Output) => seqs.push(Number(m.seq)),
    resync: (d: ChatDelivery__Output) => resyncs.push(d),
    writable: () => !s.slow,
    drained: () => (s.slow ? new Promise<void>((r) => drained.push(r)) : Promise.resolve()),
    catchUp: () => {
      s.slow = false;
      for (const resolve of drained.splice(0)) resolve();
      drained = [];
    },
  };
  return s satisfies TailSink & Record<string, unknown>;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('ChatTail', () => {
  it('without follow: every message from `from` to the head, in pages, then ends', async () => {
    const { fake, client } = await connectedClient();
    for (let i = 1; i <= TAIL_PAGE * 2 + 10; i += 1) fake.append('fleet', `m${i}`);
    const all = sink();
    await new ChatTail(client, { room: 'fleet', follow: false }, all).run();
    expect(all.seqs).toEqual(range(1, TAIL_PAGE * 2 + 10));
    const some = sink();
    await new ChatTail(client, { room: 'fleet', from: 500, follow: false }, some).run();
    expect(some.seqs).toEqual(range(500, TAIL_PAGE * 2 + 10));
  });

  it('without follow ends at the head it reached, even while posts keep coming', async () => {
    let next = 1;
    const sizes = [TAIL_PAGE, 100, TAIL_PAGE, TAIL_PAGE];
    const source: TailSource = {
      follows: () => true,
      onRoom: () => () => undefined,
      history: async () => chatDelivery('r', 'e', Array.from({ length: sizes.shift() ?? 0 }, () => chatMessage('r', next++, 'x'))),
    };
    const out = sink();
    await new ChatTail(source, { room: 'r', follow: false }, out).run();
    expect(out.seqs).toEqual(range(1, TAIL_PAGE + 100));
  });

  it('with follow: history, then the live messages, each seq once and none missing, while posts keep arriving', async () => {
    const { fake, client } = await connectedClient();
    for (let i = 1; i <= 1000; i += 1) fake.append('fleet', `m${i}`);
    await waitUntil(() => client.cursor('fleet')?.seq === 1000);
    const out = sink();
    const tail = new ChatTail(client, { room: 'fleet', from: 1, follow: true }, out);
    const running = tail.run();
    // Messages keep coming while the tail reads its pages, and after it went live.
    for (let i = 1001; i <= 1600; i += 1) {
      fake.append('fleet', `m${i}`);
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    await waitUntil(() => out.seqs.length >= 1600, { what: 'every message' });
    expect(out.seqs).toEqual(range(1, 1600));
    tail.stop();
    await running;
  });

  it('a reader that falls behind costs no memory: the tail goes back to history and still skips nothing', async () => {
    const { fake, client } = await connectedClient();
    fake.append('fleet', 'm1');
    const out = sink();
    const tail = new ChatTail(client, { room: 'fleet', follow: true }, out);
    const running = tail.run();
    await waitUntil(() => out.seqs.length === 1);
    out.slow = true;
    for (let i = 2; i <= 800; i += 1) fake.append('fleet', `m${i}`);
    await new Promise((r) => setTimeout(r, 20));
    // Behind: at most the one delivery that found it behind, the rest waits in the log.
    expect(out.seqs.length).toBeLessThan(10);
    out.catchUp();
    await waitUntil(() => out.seqs.length >= 800, { what: 'the reader to catch up' });
    expect(out.seqs).toEqual(range(1, 800));
    tail.stop();
    await running;
  });

  it('passes a resynchronisation on (trimmed history, or the live subscription resynced) and goes on from its head', async () => {
    const listeners: RoomListener[] = [];
    const snapshot = { room: 'r', epoch: 'e', headSeq: 50, summary: 'gist', summaryThroughSeq: 48, messages: [chatMessage('r', 49, 'a'), chatMessage('r', 50, 'b')], tokens: 1, maxMessages: 50, maxTokens: 2048 };
    const pages: ChatDelivery__Output[] = [
      chatDelivery('r', 'e', [chatMessage('r', 51, 'c')], { snapshot, resyncReason: 'trimmed', code: 'CHAT-STATE-703' }),
      chatDelivery('r', 'e', []),
    ];
    const source: TailSource = {
      follows: () => true,
      onRoom: (_room, listener) => {
        listeners.push(listener);
        return () => undefined;
      },
      history: async () => pages.shift() ?? chatDelivery('r', 'e', []),
    };
    const out = sink();
    const tail = new ChatTail(source, { room: 'r', from: 3, follow: true }, out);
    const running = tail.run();
    await waitUntil(() => out.seqs.length === 3);
    expect(out.seqs).toEqual([49, 50, 51]);
    expect(out.resyncs[0]?.resyncReason).toBe('trimmed');
    // The agent's own subscription resynchronises (Redis lost its tail): passed on, and the count restarts.
    const regressed = { ...snapshot, headSeq: 20, messages: [chatMessage('r', 20, 'z')] };
    listeners[0]!({ room: 'r', epoch: 'e2', resync: chatDelivery('r', 'e2', [], { snapshot: regressed, resyncReason: 'regressed', code: 'CHAT-STATE-703' }), messages: [chatMessage('r', 21, 'new')] });
    listeners[0]!({ room: 'r', epoch: 'e2', messages: [chatMessage('r', 22, 'newer')] });
    expect(out.resyncs.map((d) => d.resyncReason)).toEqual(['trimmed', 'regressed']);
    expect(out.seqs).toEqual([49, 50, 51, 20, 21, 22]);
    tail.stop();
    await running;
  });

  it('refuses to follow a room the node does not follow (CHAT-AUTH-501) and reports a failed read', async () => {
    const { client } = await connectedClient();
    await expect(new ChatTail(client, { room: 'elsewhere', follow: true }, sink()).run()).rejects.toMatchObject({ code: 'CHAT-AUTH-501' });
    await expect(new ChatTail(client, { room: 'nope', follow: false }, sink()).run()).rejects.toMatchObject({ code: 'CHAT-REQ-201' });
  });
});
