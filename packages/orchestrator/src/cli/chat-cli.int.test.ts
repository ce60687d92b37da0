// `orchestrator chat …` as the operator runs it: the built CLI (dist/main.js) as child processes
// against a real orchestrator on a real Redis. Needs the package built first
// (`pnpm exec tsc -b packages/orchestrator`).
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import type { ChatMessageJson } from '@conclave/protocol';
import { startRedis, type RedisServerHandle } from '@conclave/testing';
import { ORCHESTRATOR_MAIN } from '../launch.js';
import { startOrchestrator, type OrchestratorHandle } from '../orchestrator.js';

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

describe('orchestrator chat against a running orchestrator', () => {
  let redis: RedisServerHandle;
  let orchestrator: OrchestratorHandle;
  /** The CLI runs here: the orchestrator's data dir is ./.conclave/orchestrator, where it finds the operator token. */
  let dir: string;
  let env: Record<string, string | undefined>;
  let nextRoom = 0;
  /** A room of its own for each test. */
  const roomName = () => `cli-${process.pid}-${(nextRoom += 1)}`;

  const cli = (args: string[]): Promise<CliResult> =>
    new Promise((resolve) => {
      execFile(process.execPath, [ORCHESTRATOR_MAIN, ...args], { env, cwd: dir, timeout: 30_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      });
    });
  const ok = async (args: string[]): Promise<string> => {
    const r = await cli(args);
    if (r.code !== 0) throw new Error(`orchestrator ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const tailJson = async (room: string, ...flags: string[]): Promise<ChatMessageJson[]> =>
    (await ok(['chat', 'tail', room, '--json', ...flags])).trimEnd().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ChatMessageJson);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-chat-cli-'));
    redis = await startRedis();
    orchestrator = await startOrchestrator({
      redisUrl: redis.url, grpcPort: 0, httpPort: -1, dataDir: join(dir, '.conclave', 'orchestrator'), logger: nullLogger,
    });
    env = { ...process.env, CONCLAVE_OPERATOR_TOKEN: undefined, CONCLAVE_ADDRESS: orchestrator.address };
  });

  afterAll(async () => {
    await orchestrator?.close();
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a room once: it is listed, and creating it again is CHAT-REQ-206, exit 1', async () => {
    const room = roomName();
    expect(JSON.parse(await ok(['chat', 'create', room, '--json']))).toMatchObject({ name: room, headSeq: 0, createdBy: 'operator' });
    const again = await cli(['chat', 'create', room]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^CHAT-REQ-206 /);
    const rooms = JSON.parse(await ok(['chat', 'rooms', '--json'])) as Array<{ name: string }>;
    expect(rooms.map((r) => r.name)).toEqual(expect.arrayContaining(['fleet', room]));
  });

  it('two operators sending at once: every message once, gap-free seqs, and one order that every tail prints', async () => {
    const room = roomName();
    await ok(['chat', 'create', room]);
    const sendAll = async (who: string): Promise<Array<{ text: string; seq: number }>> => {
      const sent: Array<{ text: string; seq: number }> = [];
      // In order within one operator: each send waits for the one before.
      for (let i = 1; i <= 4; i += 1) {
        const text = `${who}${i}`;
        const posted = JSON.parse(await ok(['chat', 'send', room, text, '--client-msg-id', `${room}-${text}`, '--json'])) as { seq: number; sender: string; room: string };
        expect(posted).toMatchObject({ room, sender: 'operator' });
        sent.push({ text, seq: posted.seq });
      }
      return sent;
    };
    const [a, b] = await Promise.all([sendAll('a'), sendAll('b')]);
    const tail = await tailJson(room);
    expect(tail.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(tail.every((m) => m.sender === 'operator' && m.kind === 'text' && m.room === room)).toBe(true);
    // The seq each send printed is the message's place in the log.
    const bySeq = new Map(tail.map((m) => [m.seq, m.text]));
    for (const s of [...(a ?? []), ...(b ?? [])]) expect(bySeq.get(s.seq)).toBe(s.text);
    // Each operator's messages keep the order they were sent in.
    const texts = tail.map((m) => m.text);
    expect(texts.filter((t) => t.startsWith('a'))).toEqual(['a1', 'a2', 'a3', 'a4']);
    expect(texts.filter((t) => t.startsWith('b'))).toEqual(['b1', 'b2', 'b3', 'b4']);
    // Another reader sees the same order; --from is inclusive.
    expect(await tailJson(room)).toEqual(tail);
    expect(await tailJson(room, '--from', '6')).toEqual(tail.slice(5));
    // A retried send with the same id appends nothing and answers the first seq.
    const retried = JSON.parse(await ok(['chat', 'send', room, 'a1', '--client-msg-id', `${room}-a1`, '--json'])) as { seq: number; duplicate?: boolean };
    expect(retried).toMatchObject({ seq: a?.[0]?.seq, duplicate: true });
    expect((await tailJson(room)).length).toBe(8);
  });

  it('claims first come, first served: the second claim exits 3 naming the holder; a wrong fence is CHAT-STATE-701', async () => {
    const room = roomName();
    await ok(['chat', 'create', room]);
    const first = await cli(['chat', 'claim', room, 'deploy', '--ttl', '1m', '--json']);
    expect(first.code).toBe(0);
    const won = JSON.parse(first.stdout) as { ok: boolean; fence: number; seq: number };
    expect(won).toMatchObject({ ok: true, fence: expect.any(Number) as unknown, seq: 1 });

    const second = await cli(['chat', 'claim', room, 'deploy', '--json']);
    expect(second.code).toBe(3);
    expect(second.stderr).toBe('');
    expect(JSON.parse(second.stdout)).toMatchObject({ ok: false, holder: 'operator', seq: won.seq, code: 'CHAT-STATE-702' });

    const stale = await cli(['chat', 'release', room, 'deploy', '--fence', String(won.fence + 1)]);
    expect(stale.code).toBe(1);
    expect(stale.stdout).toBe('');
    expect(stale.stderr).toMatch(/^CHAT-STATE-701 stale fencing token/);

    const released = JSON.parse(await ok(['chat', 'release', room, 'deploy', '--fence', String(won.fence), '--json'])) as { fence: number; seq: number };
    expect(released).toMatchObject({ fence: won.fence, seq: 2 });
    const notClaimed = await cli(['chat', 'release', room, 'deploy', '--fence', String(won.fence)]);
    expect(notClaimed.code).toBe(1);
    expect(notClaimed.stderr).toMatch(/^CHAT-STATE-704 /);

    // The log shows the claim and its release, with the fence.
    expect((await tailJson(room)).map((m) => [m.kind, m.resource, m.fence])).toEqual([
      ['claim', 'deploy', won.fence],
      ['release', 'deploy', won.fence],
    ]);
    // Free again: the next claim wins with a higher fence.
    const third = JSON.parse(await ok(['chat', 'claim', room, 'deploy', '--json'])) as { ok: boolean; fence: number };
    expect(third.ok).toBe(true);
    expect(third.fence).toBeGreaterThan(won.fence);
  });

  it('tail -f prints new messages as they come and exits 0 on SIGINT', async () => {
    const room = roomName();
    await ok(['chat', 'create', room]);
    await ok(['chat', 'send', room, 'before']);
    const child = spawn(process.execPath, [ORCHESTRATOR_MAIN, 'chat', 'tail', room, '-f', '--json'], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const next = async (): Promise<ChatMessageJson> => JSON.parse(((await lines.next()).value as string | undefined) ?? 'null') as ChatMessageJson;
    try {
      expect(await next()).toMatchObject({ seq: 1, text: 'before' });
      await ok(['chat', 'send', room, 'after']);
      expect(await next()).toMatchObject({ seq: 2, text: 'after' });
      const exited = once(child, 'exit');
      child.kill('SIGINT');
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
      expect(stderr).toBe('');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('context shows the window; an unknown room is CHAT-REQ-201', async () => {
    const room = roomName();
    await ok(['chat', 'create', room]);
    await ok(['chat', 'send', room, 'one']);
    await ok(['chat', 'send', room, 'two']);
    const context = JSON.parse(await ok(['chat', 'context', room, '--json'])) as { headSeq: number; messages: ChatMessageJson[] };
    expect(context.headSeq).toBe(2);
    expect(context.messages.map((m) => m.text)).toEqual(['one', 'two']);
    const unknown = await cli(['chat', 'tail', 'no-such-room']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^CHAT-REQ-201 /);
  });
});
