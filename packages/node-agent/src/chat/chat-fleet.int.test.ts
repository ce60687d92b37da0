// Two node agents and a real orchestrator on a real Redis, talking through the agents' board
// sockets as a board's programs would. Build first (`pnpm build`): the agents run from dist.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, nullLogger } from '@conclave/common';
import { startOrchestrator } from '@conclave/orchestrator';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import type { ChatMessageJson } from '@conclave/protocol';
import { startRedis, startTestNode, tempDir, waitUntil } from '@conclave/testing';
import type { RedisServerHandle } from '@conclave/testing';
import { CHAT_SOCKET_FILE } from './chat-socket.js';
import { ChatSocketClient } from './chat-socket-client.js';

type TestNode = Awaited<ReturnType<typeof startTestNode>>;

/** The whole log of `room` as one agent's socket reads it (a tail without follow). */
async function readLog(node: TestNode, room: string): Promise<ChatMessageJson[]> {
  const client = await ChatSocketClient.connect(join(node.dataDir, CHAT_SOCKET_FILE));
  try {
    const messages: ChatMessageJson[] = [];
    await client.stream({ op: 'tail', room, from: 1 }, (answer) => {
      if (answer.event === 'message') messages.push(answer['message'] as ChatMessageJson);
    });
    return messages;
  } finally {
    client.close();
  }
}

describe('the group chat between two agents and an orchestrator', () => {
  let redis: RedisServerHandle;
  let orchestratorDir: { path: string; remove: () => Promise<void> };
  let orchestrator: OrchestratorHandle;
  let grpcPort = 0;
  let a: TestNode;
  let b: TestNode;
  const aLogs = captureLogger('NODE');
  const nodeDirs: Array<{ path: string; remove: () => Promise<void> }> = [];
  const cleanups: Array<() => Promise<unknown>> = [];

  const startOrch = async (): Promise<OrchestratorHandle> => {
    const handle = await startOrchestrator({
      grpcHost: '127.0.0.1', grpcPort, httpPort: -1, dataDir: orchestratorDir.path, redisUrl: redis.url, logger: nullLogger, heartbeatIntervalMs: 250,
    });
    grpcPort = handle.grpcPort;
    return handle;
  };

  beforeAll(async () => {
    redis = await startRedis();
    orchestratorDir = await tempDir('conclave-chat-orch-');
    orchestrator = await startOrch();
    for (let i = 0; i < 2; i += 1) nodeDirs.push(await tempDir('conclave-chat-node-'));
    a = await startTestNode({ orchestrator, dataDir: nodeDirs[0]!.path, name: 'alpha', logger: aLogs.logger, inference: false });
    b = await startTestNode({ orchestrator, dataDir: nodeDirs[1]!.path, name: 'beta', inference: false });
    await waitUntil(() => a.connected && b.connected, { what: 'both nodes connected' });
  }, 60_000);

  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await a?.close().catch(() => undefined);
    await b?.close().catch(() => undefined);
    await orchestrator?.close().catch(() => undefined);
    await redis?.stop();
    for (const dir of [...nodeDirs, orchestratorDir]) await dir?.remove();
  });

  it('posts from both boards\' programs land in one order that both agents read identically, live and from history', async () => {
    const [ca, cb] = await Promise.all([a, b].map((n) => ChatSocketClient.connect(join(n.dataDir, CHAT_SOCKET_FILE))));
    cleanups.push(async () => ca!.close(), async () => cb!.close());
    // A follower on each agent, from the start, before anything is posted.
    const followed: Record<'a' | 'b', ChatMessageJson[]> = { a: [], b: [] };
    for (const [name, client] of [['a', ca!], ['b', cb!]] as const) {
      void client.stream({ op: 'tail', room: 'fleet', from: 1, follow: true }, (answer) => {
        if (answer.event === 'message') followed[name].push(answer['message'] as ChatMessageJson);
      }).catch(() => undefined);
    }
    const [pa, pb] = await Promise.all([a, b].map((n) => ChatSocketClient.connect(join(n.dataDir, CHAT_SOCKET_FILE))));
    cleanups.push(async () => pa!.close(), async () => pb!.close());
    const answers = await Promise.all([
      ...Array.from({ length: 150 }, (_, i) => pa!.request({ op: 'post', room: 'fleet', text: `alpha ${i}` })),
      ...Array.from({ length: 150 }, (_, i) => pb!.request({ op: 'post', room: 'fleet', text: `beta ${i}` })),
    ]);
    expect(answers.every((x) => x.ok === true && typeof x['seq'] === 'number')).toBe(true);
    expect(new Set(answers.map((x) => x['seq'])).size).toBe(300);

    const logA = await readLog(a, 'fleet');
    const logB = await readLog(b, 'fleet');
    const texts = (log: ChatMessageJson[]) => log.filter((m) => m.kind === 'text').map((m) => `${m.seq} ${m.sender} ${m.text}`);
    expect(texts(logA)).toHaveLength(300);
    expect(texts(logB)).toEqual(texts(logA));
    // Gap-free, and each board's posts in the order its program sent them.
    expect(logA.map((m) => m.seq)).toEqual(Array.from({ length: logA.length }, (_, i) => logA[0]!.seq + i));
    for (const [who, id] of [['alpha', a.nodeId], ['beta', b.nodeId]] as const) {
      const mine = logA.filter((m) => m.text.startsWith(`${who} `));
      expect(mine.map((m) => m.text)).toEqual(Array.from({ length: 150 }, (_, i) => `${who} ${i}`));
      expect(mine.every((m) => m.sender === id)).toBe(true);
    }
    // The followers saw the same thing, live.
    await waitUntil(() => followed.a.length >= logA.length && followed.b.length >= logA.length, { what: 'both followers' });
    expect(followed.a.slice(0, logA.length)).toEqual(logA);
    expect(followed.b.slice(0, logA.length)).toEqual(logA);
  }, 60_000);

  it('posts made while the orchestrator is down are queued, then appended once each, in order, after it is back', async () => {
    await orchestrator.close();
    await waitUntil(() => !a.connected, { what: 'the agent to see the orchestrator gone' });
    const client = await ChatSocketClient.connect(join(a.dataDir, CHAT_SOCKET_FILE));
    cleanups.push(async () => client.close());
    const queued = [];
    for (let i = 0; i < 5; i += 1) queued.push(await client.request({ op: 'post', room: 'fleet', text: `offline ${i}` }));
    expect(queued.every((q) => q['queued'] === true)).toBe(true);
    // Claims need the orchestrator.
    await expect(client.request({ op: 'claim', room: 'fleet', resource: 'gpu', ttlMs: 1000 })).rejects.toMatchObject({ code: 'CHAT-NET-601' });
    orchestrator = await startOrch();
    await waitUntil(() => a.connected && b.connected, { what: 'both nodes back', timeoutMs: 20_000 });
    await waitUntil(async () => (await readLog(b, 'fleet')).filter((m) => m.text.startsWith('offline ')).length >= 5, { what: 'the queued posts', timeoutMs: 20_000 });
    const offline = (await readLog(b, 'fleet')).filter((m) => m.text.startsWith('offline '));
    expect(offline.map((m) => m.text)).toEqual(Array.from({ length: 5 }, (_, i) => `offline ${i}`));
    expect(offline.map((m) => m.clientMsgId)).toEqual(queued.map((q) => q['clientMsgId']));
  }, 60_000);

  it('an agent restarted on its data dir resumes its subscription from its cursor: no gap, no resync', async () => {
    const cursorsFile = join(a.dataDir, 'chat', 'cursors.json');
    const headBefore = (await readLog(b, 'fleet')).at(-1)!.seq;
    await waitUntil(async () => (JSON.parse(await readFile(cursorsFile, 'utf8')) as { rooms: { fleet: { seq: number } } }).rooms.fleet.seq === headBefore, { what: 'A\'s cursor at the head' });
    await a.close();
    // While A is down, B's program keeps talking.
    const client = await ChatSocketClient.connect(join(b.dataDir, CHAT_SOCKET_FILE));
    cleanups.push(async () => client.close());
    for (let i = 0; i < 10; i += 1) await client.request({ op: 'post', room: 'fleet', text: `while A was down ${i}` });
    const head = (await readLog(b, 'fleet')).at(-1)!.seq;
    aLogs.lines.length = 0;
    a = await startTestNode({ orchestrator, dataDir: nodeDirs[0]!.path, name: 'alpha', logger: aLogs.logger, inference: false });
    await waitUntil(() => a.connected, { what: 'A back' });
    await waitUntil(async () => (JSON.parse(await readFile(cursorsFile, 'utf8')) as { rooms: { fleet: { seq: number } } }).rooms.fleet.seq === head, { what: 'A\'s cursor to reach the head' });
    const chatLines = aLogs.lines.filter((l) => l.includes('CHAT-'));
    expect(chatLines.filter((l) => l.includes('CHAT-STATE-703') || l.includes('does not continue the cursor'))).toEqual([]);
    // What A missed is in its history, contiguous.
    const log = await readLog(a, 'fleet');
    expect(log.filter((m) => m.seq > headBefore).map((m) => m.seq)).toEqual(Array.from({ length: head - headBefore }, (_, i) => headBefore + 1 + i));
  }, 60_000);
});
