import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import { chatClaimJson, chatMessageJson } from '@conclave/protocol';
import { waitUntil } from '@conclave/testing';
import { ChatClient } from '../chat/chat-client.js';
import { ChatCursors } from '../chat/chat-cursors.js';
import { ChatOutbox } from '../chat/chat-outbox.js';
import { CHAT_SOCKET_FILE, ChatSocketServer } from '../chat/chat-socket.js';
import { FakeChatOrchestrator } from '../chat/test-support.js';
import { runNodeAgentCli } from './node-agent-program.js';

class StringOut {
  text = '';
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

describe('node-agent chat', () => {
  let dir: string;
  let fake: FakeChatOrchestrator;
  let client: ChatClient;
  let server: ChatSocketServer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chat-cli-'));
    fake = new FakeChatOrchestrator();
    client = new ChatClient({
      transport: fake, logger: nullLogger,
      outbox: await ChatOutbox.open(join(dir, 'chat-outbox')), cursors: await ChatCursors.open(join(dir, 'chat', 'cursors.json')),
    });
    fake.peer = client;
    client.connected();
    server = await ChatSocketServer.start({ path: join(dir, CHAT_SOCKET_FILE), chat: client, logger: nullLogger });
  });
  afterAll(async () => {
    await server.close();
    await client.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function run(args: string[], options: { signal?: Promise<string>; env?: Record<string, string>; stdout?: StringOut } = {}) {
    const stdout = options.stdout ?? new StringOut();
    const stderr = new StringOut();
    const code = await runNodeAgentCli(['chat', ...args], {
      env: options.env ?? {},
      io: { stdout, stderr },
      startNodeAgent: () => Promise.reject(new Error('not started by chat commands')),
      shutdownSignal: () => options.signal ?? new Promise<string>(() => undefined),
    });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  it('send: prints chatPostedJson with --json, key-value lines without; exit 0', async () => {
    const json = await run(['send', 'fleet', 'hello from a script', '--data-dir', dir, '--client-msg-id', 'cli-1', '--json']);
    expect(json).toMatchObject({ code: 0, stderr: '' });
    const posted = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(posted).toEqual({ room: 'fleet', seq: posted['seq'], sender: 'node-x', clientMsgId: 'cli-1' });
    const again = await run(['send', 'fleet', 'hello from a script', '--data-dir', dir, '--client-msg-id', 'cli-1', '--json']);
    expect(JSON.parse(again.stdout)).toEqual({ ...posted, duplicate: true });
    const human = await run(['send', 'fleet', 'second', '--data-dir', dir]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^room: +fleet\nseq: +\d+\nsender: +node-x\nclient msg id: [0-9a-f-]{36}\n$/);
  });

  it('send while the node is offline: `queued` (exit 0), sent when it reconnects', async () => {
    fake.connected = false;
    try {
      const r = await run(['send', 'fleet', 'while offline', '--data-dir', dir, '--json']);
      expect(r.code).toBe(0);
      const queued = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(queued).toEqual({ room: 'fleet', clientMsgId: queued['clientMsgId'], queued: true });
    } finally {
      fake.connected = true;
    }
    client.connected();
    await waitUntil(() => fake.rooms.get('fleet')!.log.some((m) => m.text === 'while offline'));
  });

  it('claim: chatClaimJson; exit 0 when won, 3 when someone else holds it', async () => {
    const won = await run(['claim', 'fleet', 'gpu0', '--ttl', '2m', '--data-dir', dir, '--json']);
    expect(won.code).toBe(0);
    expect(JSON.parse(won.stdout)).toMatchObject({ ok: true, fence: 1, room: 'fleet', resource: 'gpu0' });
    expect(fake.requests('claim').at(-1)?.claim?.ttlMs).toBe(120_000);
    const heldResult = { ok: false, room: 'fleet', resource: 'gpu0', fence: 0, seq: 12, holder: 'node-y', expiresAtMs: 1_700_000_000_000, code: 'CHAT-STATE-702' };
    fake.override = (r) => (r.claim ? { requestId: 0, outcome: 'claimed', claimed: heldResult } : undefined);
    try {
      const held = await run(['claim', 'fleet', 'gpu0', '--data-dir', dir, '--json']);
      expect(held.code).toBe(3);
      expect(JSON.parse(held.stdout)).toEqual(chatClaimJson(heldResult));
      expect(fake.requests('claim').at(-1)?.claim?.ttlMs).toBe(30_000);
      const human = await run(['claim', 'fleet', 'gpu0', '--data-dir', dir]);
      expect(human.code).toBe(3);
      expect(human.stdout).toContain('holder:  node-y');
      expect(human.stdout).toContain('CHAT-STATE-702');
    } finally {
      fake.override = undefined;
    }
  });

  it('release, join, context and rooms print their JSON shapes', async () => {
    const released = await run(['release', 'fleet', 'gpu0', '--fence', '1', '--data-dir', dir, '--json']);
    expect(released.code).toBe(0);
    expect(Object.keys(JSON.parse(released.stdout) as object)).toEqual(['room', 'resource', 'fence', 'seq']);
    fake.createRoom('ops');
    const joined = await run(['join', 'ops', '--data-dir', dir, '--json']);
    expect(joined.code).toBe(0);
    expect(Object.keys(JSON.parse(joined.stdout) as object)).toEqual(['name', 'epoch', 'headSeq', 'firstSeq', 'members', 'createdAtMs', 'createdBy']);
    const context = await run(['context', 'fleet', '--data-dir', dir, '--json']);
    expect(JSON.parse(context.stdout)).toMatchObject({ room: 'fleet', epoch: 'e1', messages: expect.any(Array) });
    const rooms = await run(['rooms', '--data-dir', dir, '--json']);
    expect((JSON.parse(rooms.stdout) as Array<{ name: string }>).map((r) => r.name).sort()).toEqual(['fleet', 'ops']);
    const table = await run(['rooms', '--data-dir', dir]);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME +HEAD +FIRST +MEMBERS +CREATED BY$/);
  });

  it('tail: one chatMessageJson a line from --from; -f follows until the signal, exit 0', async () => {
    fake.createRoom('tails');
    await run(['join', 'tails', '--data-dir', dir]);
    for (let i = 1; i <= 3; i += 1) fake.append('tails', `t${i}`);
    const r = await run(['tail', 'tails', '--from', '2', '--data-dir', dir, '--json']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const log = fake.rooms.get('tails')!.log;
    expect(lines).toEqual([chatMessageJson(log[1]!), chatMessageJson(log[2]!)]);
    const human = await run(['tail', 'tails', '--data-dir', dir]);
    expect(human.stdout.split('\n')[0]).toMatch(/^#1 \d{4}-\d\d-\d\dT[\d:.]+Z node-y text: t1$/);

    let stop: (signal: string) => void = () => undefined;
    const signal = new Promise<string>((resolve) => {
      stop = resolve;
    });
    const out = new StringOut();
    const seqs = (): number[] => out.text.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { seq: number }).seq);
    const following = run(['tail', 'tails', '--from', '3', '-f', '--data-dir', dir, '--json'], { signal, stdout: out });
    await waitUntil(() => seqs().length === 1, { what: 'the tail to print #3' });
    fake.append('tails', 't4');
    await waitUntil(() => seqs().length === 2, { what: 'the tail to print the new message' });
    stop('SIGINT');
    const followed = await following;
    expect(followed.code).toBe(0);
    expect(seqs()).toEqual([3, 4]);
  });

  it('errors are one coded line on stderr: the agent\'s answer (exit 1, or 2 for bad input), no agent (CHAT-NET-602)', async () => {
    const unknown = await run(['send', 'nowhere', 'x', '--data-dir', dir]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^CHAT-REQ-201 unknown room: nowhere — Create it with/);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    const badRoom = await run(['send', 'Not A Room', 'x', '--data-dir', dir]);
    expect(badRoom.code).toBe(2);
    expect(badRoom.stderr).toMatch(/^CHAT-REQ-202 invalid room name/);
    const empty = await mkdtemp(join(tmpdir(), 'chat-cli-none-'));
    try {
      const none = await run(['rooms', '--data-dir', empty]);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/^CHAT-NET-602 node agent chat socket unavailable: .*chat\.sock: ENOENT — Start the node agent/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
    const viaEnv = await run(['rooms', '--json'], { env: { CONCLAVE_DATA_DIR: dir } });
    expect(viaEnv.code).toBe(0);
  });

  it('bad flags are NODE-STATE-705, exit 2, before anything is sent', async () => {
    const before = fake.frames.length;
    for (const args of [
      ['claim', 'fleet', 'r', '--ttl', '30', '--data-dir', dir],
      ['claim', 'fleet', 'r', '--ttl', 'soon', '--data-dir', dir],
      ['release', 'fleet', 'r', '--data-dir', dir],
      ['release', 'fleet', 'r', '--fence', 'x', '--data-dir', dir],
      ['tail', 'fleet', '--from', '-3', '--data-dir', dir],
      ['tail', 'fleet', '--from', '0', '--data-dir', dir],
      ['release', 'fleet', 'r', '--fence', '0', '--data-dir', dir],
      ['rooms'],
    ]) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/^NODE-STATE-705 command line not understood: /);
    }
    expect(fake.frames.length).toBe(before);
  });
});
