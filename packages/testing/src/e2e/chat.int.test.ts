// The group chat as an operator and two boards use it: `orchestrator start` and two `node-agent
// start` children, driven through the two CLIs (`orchestrator chat …`, `node-agent chat …`).
// Needs the build (`pnpm build`).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NODE_AGENT_MAIN } from '@conclave/node-agent';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import type { ChatMessageJson } from '@conclave/protocol';
import { spawnNodeAgent, spawnOrchestrator, tempDir } from '../fleet.js';
import { startRedis } from '../redis.js';
import type { RedisServerHandle } from '../index.js';
import { waitUntil } from '../wait-until.js';
import { Cleanup } from './e2e-support.js';

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [script, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const lines = (stdout: string): ChatMessageJson[] => stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ChatMessageJson);

describe('the group chat between an operator and two boards, through the CLIs', () => {
  const cleanup = new Cleanup();
  let redis: RedisServerHandle;
  let orchestrator: Awaited<ReturnType<typeof spawnOrchestrator>>;
  const boards: Array<Awaited<ReturnType<typeof spawnNodeAgent>> & { dataDir: string }> = [];
  let operatorEnv: NodeJS.ProcessEnv;

  const operator = (args: string[]) => run(ORCHESTRATOR_MAIN, ['chat', ...args], operatorEnv);
  const board = (i: number, args: string[]) => run(NODE_AGENT_MAIN, ['chat', ...args, '--data-dir', (boards[i] as { dataDir: string }).dataDir], process.env);

  beforeAll(async () => {
    redis = await startRedis();
    cleanup.add(() => redis.stop());
    const orchestratorDir = await tempDir('conclave-chat-e2e-orch-');
    cleanup.add(() => orchestratorDir.remove());
    // At debug, its CHAT lines say where each subscription starts.
    orchestrator = await spawnOrchestrator({ redisUrl: redis.url, dataDir: orchestratorDir.path, args: ['--log-level', 'debug'] });
    cleanup.add(() => orchestrator.stop());
    operatorEnv = { ...process.env, CONCLAVE_ADDRESS: orchestrator.address, CONCLAVE_OPERATOR_TOKEN: orchestrator.operatorToken };
    for (const name of ['pi-01', 'pi-02']) {
      const dir = await tempDir('conclave-chat-e2e-node-');
      cleanup.add(() => dir.remove());
      const node = await spawnNodeAgent({ orchestrator, dataDir: dir.path, name });
      cleanup.add(() => node.stop());
      boards.push(Object.assign(node, { dataDir: dir.path }));
    }
  }, 60_000);
  afterAll(() => cleanup.run());

  it('gives two boards and an operator posting at once one order, the same from every CLI', async () => {
    const perSender = 5;
    const posts: Array<Promise<CliResult>> = [];
    for (let i = 0; i < perSender; i += 1) {
      posts.push(board(0, ['send', 'fleet', `pi-01 says ${i}`, '--json']));
      posts.push(board(1, ['send', 'fleet', `pi-02 says ${i}`, '--json']));
      posts.push(operator(['send', 'fleet', `operator says ${i}`, '--json']));
    }
    const results = await Promise.all(posts);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const seqs = results.map((r) => (JSON.parse(r.stdout) as { seq: number }).seq);
    expect(new Set(seqs).size).toBe(3 * perSender);

    const fromOperator = lines((await operator(['tail', 'fleet', '--json'])).stdout);
    const texts = fromOperator.filter((m) => m.kind === 'text');
    expect(texts).toHaveLength(3 * perSender);
    // Gap-free from the first entry, and the senders are the authenticated identities.
    expect(fromOperator.map((m) => m.seq)).toEqual(fromOperator.map((_, i) => (fromOperator[0] as ChatMessageJson).seq + i));
    expect(new Set(texts.map((m) => m.sender))).toEqual(new Set([boards[0]?.nodeId, boards[1]?.nodeId, 'operator']));
    for (const m of texts) {
      if (m.sender !== 'operator') expect(m.text.startsWith(m.senderName ?? '?')).toBe(true);
    }
    // Each board's agent reads exactly the same log, in the same order.
    await waitUntil(async () => lines((await board(0, ['tail', 'fleet', '--json'])).stdout).length >= fromOperator.length);
    for (const i of [0, 1]) {
      const fromBoard = lines((await board(i, ['tail', 'fleet', '--json'])).stdout);
      expect(fromBoard.slice(0, fromOperator.length)).toEqual(fromOperator);
    }
  });

  it('has exactly one winner when the boards and the operator claim at once; the others exit 3 naming it', async () => {
    const claims = await Promise.all([
      board(0, ['claim', 'fleet', 'camera-7', '--ttl', '30s', '--json']),
      board(1, ['claim', 'fleet', 'camera-7', '--ttl', '30s', '--json']),
      operator(['claim', 'fleet', 'camera-7', '--ttl', '30s', '--json']),
    ]);
    const won = claims.filter((r) => r.code === 0);
    expect(won).toHaveLength(1);
    const winner = JSON.parse((won[0] as CliResult).stdout) as { ok: boolean; fence: number; seq: number; holder: string };
    expect(winner.ok).toBe(true);
    for (const lost of claims.filter((r) => r.code !== 0)) {
      expect(lost.code).toBe(3);
      expect(JSON.parse(lost.stdout)).toMatchObject({ ok: false, holder: winner.holder, seq: winner.seq });
    }
    const holder = winner.holder === 'operator' ? undefined : boards.findIndex((b) => b.nodeId === winner.holder);
    const release = (fence: number) => (holder === undefined
      ? operator(['release', 'fleet', 'camera-7', '--fence', String(fence)])
      : board(holder, ['release', 'fleet', 'camera-7', '--fence', String(fence)]));
    const stale = await release(winner.fence + 1);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/CHAT-STATE-701/);
    expect((await release(winner.fence)).code).toBe(0);
  });

  it('resumes a board restarted on its data dir from its cursor: exactly the messages it missed, no resync', async () => {
    const restarted = boards[1] as (typeof boards)[number];
    const cursor = async () => {
      const file = JSON.parse(await readFile(join(restarted.dataDir, 'chat', 'cursors.json'), 'utf8')) as { rooms: Record<string, { epoch: string; seq: number }> };
      return file.rooms.fleet;
    };
    const head = async () => (lines((await operator(['tail', 'fleet', '--json'])).stdout).at(-1) as ChatMessageJson).seq;
    // Caught up and written before it goes: its cursor is the head.
    const before = await head();
    await waitUntil(async () => (await cursor())?.seq === before, { what: 'pi-02 caught up' });
    const { epoch } = (await cursor()) as { epoch: string };
    await restarted.stop();
    for (let i = 0; i < 5; i += 1) expect((await operator(['send', 'fleet', `while pi-02 was away ${i}`])).code).toBe(0);
    const again = await spawnNodeAgent({ orchestrator, dataDir: restarted.dataDir, name: 'pi-02' });
    cleanup.add(() => again.stop());
    boards[1] = Object.assign(again, { dataDir: restarted.dataDir });
    // Its subscription resumed after the cursor (not from the start of the log): it applied exactly
    // the five, in the same epoch.
    await waitUntil(() => orchestrator.lines.some((l) => l.includes('chat member subscribed') && l.includes('room=fleet')
      && l.includes(`seq=${before} `) && l.includes(`member=${again.nodeId}`)), { what: 'a subscription of pi-02 from its cursor' });
    await waitUntil(async () => (await cursor())?.seq === before + 5, { what: 'pi-02 resumed' });
    expect((await cursor())?.epoch).toBe(epoch);
    const seen = lines((await board(1, ['tail', 'fleet', '--json', '--from', String(before + 1)])).stdout);
    expect(seen.map((m) => m.text)).toEqual(Array.from({ length: 5 }, (_, i) => `while pi-02 was away ${i}`));
  });
});
