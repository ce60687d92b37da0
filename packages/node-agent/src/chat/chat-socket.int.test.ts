import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger } from '@conclave/common';
import { waitUntil } from '@conclave/testing';
import { ChatClient } from './chat-client.js';
import { ChatCursors } from './chat-cursors.js';
import { ChatOutbox } from './chat-outbox.js';
import { CHAT_SOCKET_FILE, ChatSocketServer } from './chat-socket.js';
import { FakeChatOrchestrator } from './test-support.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function start(options: { maxConnections?: number; maxLineBytes?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'chat-sock-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const fake = new FakeChatOrchestrator();
  const logs = captureLogger('CHAT');
  const client = new ChatClient({
    transport: fake, logger: logs.logger,
    outbox: await ChatOutbox.open(join(dir, 'chat-outbox')), cursors: await ChatCursors.open(join(dir, 'chat', 'cursors.json')),
  });
  fake.peer = client;
  client.connected();
  const path = join(dir, CHAT_SOCKET_FILE);
  const server = await ChatSocketServer.start({ path, chat: client, logger: logs.logger, ...options });
  cleanups.push(() => client.close());
  cleanups.push(() => server.close());
  return { dir, path, fake, client, server, logs };
}

/** A raw client: writes lines, collects answer lines. */
async function connect(path: string) {
  const socket: Socket = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  cleanups.push(async () => {
    socket.destroy();
  });
  const lines: Array<Record<string, unknown>> = [];
  let rest = '';
  let closed = false;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    rest += chunk;
    const parts = rest.split('\n');
    rest = parts.pop() ?? '';
    for (const part of parts) lines.push(JSON.parse(part) as Record<string, unknown>);
  });
  socket.on('close', () => {
    closed = true;
  });
  const c = {
    lines,
    get closed() {
      return closed;
    },
    write: (text: string) => socket.write(text),
    send: (body: Record<string, unknown>) => socket.write(`${JSON.stringify(body)}\n`),
    /** The answer (not an event) with this id. */
    answer: async (id: unknown) => waitUntil(() => lines.find((l) => l['id'] === id && 'ok' in l), { what: `the answer to ${String(id)}` }),
  };
  return c;
}

describe('the board socket', () => {
  it('is a 0600 socket in the 0700 data dir', async () => {
    const { path, dir } = await start();
    expect((await stat(path)).isSocket()).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
  });

  it('posts: the seq when connected, `queued` when offline', async () => {
    const { path, fake } = await start();
    const c = await connect(path);
    c.send({ id: 1, op: 'post', room: 'fleet', text: 'hello', clientMsgId: 'h-1' });
    expect(await c.answer(1)).toEqual({ id: 1, ok: true, room: 'fleet', seq: 1, sender: 'node-x', clientMsgId: 'h-1' });
    c.send({ id: 'again', op: 'post', room: 'fleet', text: 'hello', clientMsgId: 'h-1' });
    expect(await c.answer('again')).toMatchObject({ ok: true, seq: 1, duplicate: true });
    fake.connected = false;
    c.send({ id: 2, op: 'post', room: 'fleet', text: 'later' });
    const queued = await c.answer(2);
    expect(queued).toMatchObject({ id: 2, ok: true, room: 'fleet', queued: true });
    expect(String(queued['clientMsgId'])).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers claim (nested, so that a held claim is still an answer), release, context, join, leave and rooms', async () => {
    const { path, fake } = await start();
    fake.createRoom('ops');
    const c = await connect(path);
    c.send({ id: 1, op: 'claim', room: 'fleet', resource: 'gpu', ttlMs: 5000 });
    expect(await c.answer(1)).toMatchObject({ ok: true, claim: { ok: true, fence: 1, room: 'fleet', resource: 'gpu' } });
    fake.override = (r) => (r.claim ? { requestId: 0, outcome: 'claimed', claimed: { ok: false, room: 'fleet', resource: 'gpu', fence: 0, seq: 4, holder: 'node-y', expiresAtMs: 9, code: 'CHAT-STATE-702' } } : undefined);
    c.send({ id: 2, op: 'claim', room: 'fleet', resource: 'gpu', ttlMs: 5000 });
    expect(await c.answer(2)).toMatchObject({ ok: true, claim: { ok: false, holder: 'node-y', seq: 4, code: 'CHAT-STATE-702' } });
    c.send({ id: 3, op: 'release', room: 'fleet', resource: 'gpu', fence: 1 });
    expect(await c.answer(3)).toMatchObject({ ok: true, room: 'fleet', resource: 'gpu', fence: 1 });
    c.send({ id: 4, op: 'context', room: 'fleet' });
    expect(await c.answer(4)).toMatchObject({ ok: true, room: 'fleet', epoch: 'e1', messages: [] });
    c.send({ id: 5, op: 'join', room: 'ops' });
    expect(await c.answer(5)).toMatchObject({ ok: true, name: 'ops', headSeq: 0 });
    c.send({ id: 6, op: 'rooms' });
    expect(((await c.answer(6))['rooms'] as Array<{ name: string }>).map((r) => r.name).sort()).toEqual(['fleet', 'ops']);
    c.send({ id: 7, op: 'leave', room: 'ops' });
    expect(await c.answer(7)).toMatchObject({ ok: true, name: 'ops' });
  });

  it('answers every malformed line CHAT-REQ-204 with what was expected, and goes on serving the same connection', async () => {
    const { path } = await start({ maxLineBytes: 4096 });
    const c = await connect(path);
    const cases: Array<[string, string]> = [
      ['not json at all', 'not JSON'],
      ['[1,2]', 'a request is a JSON object'],
      ['"text"', 'a request is a JSON object'],
      ['{"id":1}', 'no "op"'],
      ['{"id":2,"op":"shout","room":"fleet"}', 'unknown op "shout"'],
      ['{"id":3,"op":"post","text":"x"}', 'room'],
      ['{"id":4,"op":"post","room":"fleet","text":7}', 'text'],
      ['{"id":5,"op":"claim","room":"fleet","resource":"r","ttlMs":"30s"}', 'ttlMs'],
      ['{"id":6,"op":"claim","room":"fleet","resource":"r","ttl":3000}', 'ttl'],
      ['{"id":7,"op":"tail","room":"fleet","from":-1}', 'from'],
      ['{"id":8,"op":"release","room":"fleet","resource":"r","fence":1.5}', 'fence'],
      [`{"id":9,"op":"post","room":"fleet","text":"${'x'.repeat(5000)}"}`, 'line longer than 4096 bytes'],
    ];
    for (const [line] of cases) c.write(`${line}\n`);
    await waitUntil(() => c.lines.length === cases.length, { what: 'an answer to each line' });
    cases.forEach(([, expected], i) => {
      const answer = c.lines[i]!;
      expect(answer['ok']).toBe(false);
      expect(answer['error']).toMatchObject({ code: 'CHAT-REQ-204', retryable: false });
      expect(String((answer['error'] as { message: string }).message)).toContain(expected);
    });
    // The ids of the lines that parsed are echoed; the others answer null.
    expect(c.lines.map((l) => l['id'])).toEqual([null, null, null, 1, 2, 3, 4, 5, 6, 7, 8, null]);
    // A line split across writes, with CRLF, still reads.
    c.write('{"id":"split","op":"po');
    c.write('st","room":"fleet","text":"in two"}\r\n');
    expect(await c.answer('split')).toMatchObject({ ok: true, seq: 1 });
    // A bad room name is the client's own check: CHAT-REQ-202.
    c.send({ id: 'room', op: 'post', room: 'Bad Room', text: 'x' });
    expect((await c.answer('room'))['error']).toMatchObject({ code: 'CHAT-REQ-202' });
  });

  it('a tail with follow sees history then live posts from other clients, each seq once, without a gap', async () => {
    const { path, fake, client } = await start();
    for (let i = 1; i <= 600; i += 1) fake.append('fleet', `old ${i}`);
    await waitUntil(() => client.cursor('fleet')?.seq === 600);
    const reader = await connect(path);
    reader.send({ id: 't', op: 'tail', room: 'fleet', from: 1, follow: true });
    const writers = await Promise.all([connect(path), connect(path), connect(path)]);
    writers.forEach((w, n) => {
      for (let i = 0; i < 100; i += 1) w.send({ id: i, op: 'post', room: 'fleet', text: `w${n} ${i}` });
    });
    await Promise.all(writers.map((w) => waitUntil(() => w.lines.length === 100, { what: 'the writers\' answers' })));
    const seqs = (): number[] => reader.lines.filter((l) => l['event'] === 'message').map((l) => (l['message'] as { seq: number }).seq);
    await waitUntil(() => seqs().length >= 900, { what: 'every message in the tail' });
    expect(seqs()).toEqual(Array.from({ length: 900 }, (_, i) => i + 1));
    // Each writer's posts are in its own order in the log.
    for (let n = 0; n < 3; n += 1) {
      const mine = reader.lines.filter((l) => l['event'] === 'message' && String((l['message'] as { text: string }).text).startsWith(`w${n} `));
      expect(mine.map((l) => (l['message'] as { text: string }).text)).toEqual(Array.from({ length: 100 }, (_, i) => `w${n} ${i}`));
    }
    expect(writers.every((w) => w.lines.every((l) => l['ok'] === true))).toBe(true);
  });

  it('a tail without follow ends with an `end` event', async () => {
    const { path, fake } = await start();
    fake.append('fleet', 'a');
    fake.append('fleet', 'b');
    const c = await connect(path);
    c.send({ id: 9, op: 'tail', room: 'fleet', from: 2 });
    await waitUntil(() => c.lines.some((l) => l['event'] === 'end'));
    expect(c.lines.map((l) => l['event'])).toEqual(['message', 'end']);
    expect(c.lines[0]).toMatchObject({ id: 9, message: { room: 'fleet', seq: 2, text: 'b', kind: 'text' } });
  });

  it('bounds its connections: one more is answered CHAT-REQ-208 and closed, the others go on', async () => {
    const { path, server } = await start({ maxConnections: 2 });
    const a = await connect(path);
    const b = await connect(path);
    await waitUntil(() => server.connectionCount === 2);
    const c = await connect(path);
    await waitUntil(() => c.closed, { what: 'the third connection to be closed' });
    expect(c.lines).toEqual([{ id: null, ok: false, error: expect.objectContaining({ code: 'CHAT-REQ-208' }) }]);
    a.send({ id: 1, op: 'rooms' });
    b.send({ id: 1, op: 'rooms' });
    await a.answer(1);
    await b.answer(1);
  });

  it('leaves a socket another process answers on alone (CHAT-NET-602), and replaces a stale one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chat-sock-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, CHAT_SOCKET_FILE);
    const other = createServer((s) => s.end());
    await new Promise<void>((resolve) => other.listen(path, resolve));
    const chat = {} as ChatClient;
    await expect(ChatSocketServer.start({ path, chat, logger: captureLogger('CHAT').logger })).rejects.toMatchObject({ code: 'CHAT-NET-602' });
    // Its listener gone but the file left behind (a crash): removed and replaced.
    await new Promise<void>((resolve) => other.close(() => resolve()));
    const stale = createServer();
    await new Promise<void>((resolve) => stale.listen(join(dir, 'stale.sock'), resolve));
    const { renameSync } = await import('node:fs');
    renameSync(join(dir, 'stale.sock'), path);
    await new Promise<void>((resolve) => stale.close(() => resolve()));
    const server = await ChatSocketServer.start({ path, chat, logger: captureLogger('CHAT').logger });
    await server.close();
    // A regular file there is not ours to remove.
    await writeFile(path, 'mine');
    await expect(ChatSocketServer.start({ path, chat, logger: captureLogger('CHAT').logger })).rejects.toMatchObject({ code: 'CHAT-NET-602' });
  });
});
