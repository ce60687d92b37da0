// A node agent killed with SIGKILL right after its board's program was told "queued" loses none of
// those posts: the next run on the same data dir sends them, once each, in order. Real processes;
// build first (`pnpm build`).
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import { startOrchestrator } from '@conclave/orchestrator';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import type { ChatMessageJson } from '@conclave/protocol';
import { spawnNodeAgent, startRedis, tempDir, waitUntil } from '@conclave/testing';
import { ChatReplyError } from './chat-error.js';
import { CHAT_SOCKET_FILE } from './chat-socket.js';
import { ChatSocketClient } from './chat-socket-client.js';

describe('the chat outbox across a crash of the agent', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  it('sends every post a program was told is queued after kill -9, once each, in order', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const orchDir = await tempDir('conclave-crash-orch-');
    cleanups.push(orchDir.remove);
    const nodeDir = await tempDir('conclave-crash-node-');
    cleanups.push(nodeDir.remove);
    let grpcPort = 0;
    const startOrch = async (): Promise<OrchestratorHandle> => {
      const handle = await startOrchestrator({ grpcHost: '127.0.0.1', grpcPort, httpPort: -1, dataDir: orchDir.path, redisUrl: redis.url, logger: nullLogger });
      grpcPort = handle.grpcPort;
      return handle;
    };
    let orchestrator = await startOrch();
    cleanups.push(() => orchestrator.close());
    const socketPath = join(nodeDir.path, CHAT_SOCKET_FILE);

    const first = await spawnNodeAgent({ orchestrator, dataDir: nodeDir.path, name: 'crashy' });
    cleanups.push(() => first.stop());
    await orchestrator.close();
    const client = await ChatSocketClient.connect(socketPath);
    // Offline once a request that needs the orchestrator says so.
    await waitUntil(async () => {
      try {
        await client.request({ op: 'context', room: 'fleet' });
        return false;
      } catch (err) {
        return err instanceof ChatReplyError && err.code === 'CHAT-NET-601';
      }
    }, { what: 'the agent to be offline' });
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => client.request({ op: 'post', room: 'fleet', text: `survivor ${i}`, clientMsgId: `survivor-${i}` })));
    expect(answers.every((a) => a['queued'] === true)).toBe(true);
    first.process.kill('SIGKILL');
    await first.exited;
    client.close();

    orchestrator = await startOrch();
    // The same data dir: the dead agent's lock and socket file are left behind, and taken over.
    const second = await spawnNodeAgent({ orchestrator, dataDir: nodeDir.path, name: 'crashy' });
    cleanups.push(() => second.stop());
    const reader = await ChatSocketClient.connect(socketPath);
    cleanups.push(async () => reader.close());
    const survivors = async (): Promise<ChatMessageJson[]> => {
      const messages: ChatMessageJson[] = [];
      await reader.stream({ op: 'tail', room: 'fleet', from: 1 }, (a) => {
        if (a.event === 'message') messages.push(a['message'] as ChatMessageJson);
      });
      return messages.filter((m) => m.text.startsWith('survivor '));
    };
    await waitUntil(async () => (await survivors()).length >= 40, { what: 'the queued posts in the log', timeoutMs: 20_000 });
    const log = await survivors();
    expect(log.map((m) => m.text)).toEqual(Array.from({ length: 40 }, (_, i) => `survivor ${i}`));
    expect(log.every((m) => m.sender === second.nodeId)).toBe(true);
    expect(await second.stop()).toBe(0);
  }, 90_000);
});
