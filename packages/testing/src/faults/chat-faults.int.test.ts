// Fault drills on the group chat: runs the built CLIs (`pnpm build`); orchestrator and nodes are
// child processes, the boards' programs talk to their agents' sockets, the operator uses the CLI.
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChatSocketClient, CHAT_SOCKET_FILE } from '@conclave/node-agent';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import type { ChatMessageJson } from '@conclave/protocol';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { Drill } from './drill.js';

const POSTS_PER_BOARD = 60;

function operatorCli(drill: Drill, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, CONCLAVE_ADDRESS: drill.address, CONCLAVE_OPERATOR_TOKEN: drill.orchestrator.operatorToken };
  return new Promise((resolve) => {
    execFile(process.execPath, [ORCHESTRATOR_MAIN, 'chat', ...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

async function fleetLog(drill: Drill): Promise<ChatMessageJson[]> {
  const r = await operatorCli(drill, ['tail', 'fleet', '--json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ChatMessageJson);
}

/** Every post once, each sender's in the order it made them, and the seqs gap-free. */
function problems(log: readonly ChatMessageJson[], expected: ReadonlyMap<string, string[]>): string[] {
  const out: string[] = [];
  for (let i = 1; i < log.length; i += 1) {
    if ((log[i] as ChatMessageJson).seq !== (log[i - 1] as ChatMessageJson).seq + 1) out.push(`gap after #${(log[i - 1] as ChatMessageJson).seq}`);
  }
  for (const [sender, texts] of expected) {
    const got = log.filter((m) => m.sender === sender && m.kind === 'text').map((m) => m.text);
    if (JSON.stringify(got) !== JSON.stringify(texts)) out.push(`${sender}: ${got.length} of ${texts.length} posts, or out of order`);
  }
  return out;
}

describe('fault drills: the chat through Redis and orchestrator restarts', () => {
  let drill: Drill | undefined;
  afterEach(async () => {
    await drill?.close();
    drill = undefined;
  });

  it('Redis restarted (AOF) mid-load: every board program\'s post lands once, in its order, gap-free', async () => {
    drill = await Drill.start({ redis: 'external' });
    const boards = await drill.addNodes(3, 1);
    const expected = new Map<string, string[]>();
    let answered = 0;
    const programs = boards.map(async (board) => {
      const socket = await ChatSocketClient.connect(join(board.dataDir, CHAT_SOCKET_FILE));
      const texts: string[] = [];
      expected.set(board.nodeId, texts);
      try {
        for (let i = 0; i < POSTS_PER_BOARD; i += 1) {
          const text = `${board.name} post ${i}`;
          texts.push(text);
          // Answered with its seq, or `queued` while Redis is away: either way the agent keeps it.
          const answer = await socket.request({ op: 'post', room: 'fleet', text, clientMsgId: `${board.name}-${i}` });
          expect(answer.ok, JSON.stringify(answer)).toBe(true);
          answered += 1;
        }
      } finally {
        socket.close();
      }
    });
    await waitUntil(() => answered >= POSTS_PER_BOARD, { what: 'a third of the posts' });
    // A graceful restart: redis-server writes its AOF on SIGTERM, so nothing acknowledged is lost.
    const redis = drill.redis!;
    redis.kill('SIGTERM');
    await redis.exited;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    drill.redis = await startRedis({ dir: redis.dir, port: redis.port });
    const restarted = drill.redis;
    drill.cleanup.add(() => restarted.stop());
    await Promise.all(programs);
    const total = boards.length * POSTS_PER_BOARD;
    const log = await waitUntil(async () => {
      const entries = await fleetLog(drill!);
      return entries.filter((m) => m.kind === 'text').length >= total ? entries : undefined;
    }, { timeoutMs: 30_000, what: 'every post in the log' });
    expect(problems(log, expected)).toEqual([]);
    expect(log.filter((m) => m.kind === 'text')).toHaveLength(total);
  });

  it('the orchestrator killed and restarted while members follow: each follower sees every message once, in order', async () => {
    drill = await Drill.start({ redis: 'external' });
    const [board] = await drill.addNodes(1, 1);
    // A board program follows through its agent; an operator follows with `orchestrator chat tail -f`.
    const socket = await ChatSocketClient.connect(join(board!.dataDir, CHAT_SOCKET_FILE));
    const viaBoard: ChatMessageJson[] = [];
    const boardFollow = socket.stream({ op: 'tail', room: 'fleet', from: 1, follow: true }, (line) => {
      if (line.event === 'message') viaBoard.push(line.message as ChatMessageJson);
    }).catch(() => undefined);
    const env = { ...process.env, CONCLAVE_ADDRESS: drill.address, CONCLAVE_OPERATOR_TOKEN: drill.orchestrator.operatorToken };
    const tail = spawn(process.execPath, [ORCHESTRATOR_MAIN, 'chat', 'tail', 'fleet', '-f', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tailOut = '';
    let tailErr = '';
    tail.stdout.on('data', (chunk: Buffer) => (tailOut += chunk.toString()));
    tail.stderr.on('data', (chunk: Buffer) => (tailErr += chunk.toString()));
    const viaOperator = () => tailOut.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ChatMessageJson);
    try {
      const texts: string[] = [];
      const post = async (text: string) => {
        texts.push(text);
        const r = await operatorCli(drill!, ['send', 'fleet', text, '--client-msg-id', text.replace(/ /g, '-')]);
        expect(r.code, r.stderr).toBe(0);
      };
      for (let i = 0; i < 10; i += 1) await post(`before ${i}`);
      await waitUntil(() => viaOperator().filter((m) => m.kind === 'text').length === 10 && viaBoard.filter((m) => m.kind === 'text').length === 10);
      await drill.stopOrchestrator('SIGKILL');
      await drill.restartOrchestrator();
      for (let i = 0; i < 10; i += 1) await post(`after ${i}`);
      const expected = new Map([['operator', texts]]);
      await waitUntil(() => viaOperator().filter((m) => m.kind === 'text').length >= 20 && viaBoard.filter((m) => m.kind === 'text').length >= 20, {
        timeoutMs: 30_000, what: 'both followers past the restart',
      }).catch((err: unknown) => {
        throw new Error(`${String(err)}: operator tail ${viaOperator().length} (${tailErr.trim()}), board ${viaBoard.length}`);
      });
      expect(problems(viaOperator(), expected)).toEqual([]);
      expect(problems(viaBoard, expected)).toEqual([]);
      expect(viaBoard.map((m) => m.seq)).toEqual(viaOperator().map((m) => m.seq));
    } finally {
      tail.kill('SIGINT');
      socket.close();
      await boardFollow;
    }
  });
});
