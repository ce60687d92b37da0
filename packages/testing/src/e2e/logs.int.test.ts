// The fleet's logs as an operator reads them: `orchestrator start` and two `node-agent start`
// children, read through `orchestrator logs` (and `jobs list`). Needs the build (`pnpm build`).
import { execFile, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import type { RedisServerHandle } from '@conclave/common';
import type { ChildHandle } from '../child-process.js';
import type { TestControl } from '../control.js';
import { createTestControl } from '../control.js';
import { spawnNodeAgent, spawnOrchestrator, tempDir } from '../fleet.js';
import { affineModel } from '../onnx/affine-model.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { affineInput, Cleanup, wireInputs } from './e2e-support.js';

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

interface LogLine {
  id: string;
  time: string;
  level: string;
  prefix: string;
  section: string;
  code?: string;
  message: string;
  node?: string;
  nodeName?: string;
  jobId?: string;
  gap?: boolean;
  [key: string]: unknown;
}

const parseLines = (stdout: string): LogLine[] => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);

/** A `logs -f` running in the background: its JSON lines as they come, and its exit. */
interface Follower {
  lines: LogLine[];
  stderr: string[];
  exited: Promise<number>;
  stop(): void;
}

const model = affineModel({ seed: 11 });

describe("the fleet's logs, through `orchestrator logs`", () => {
  const cleanup = new Cleanup();
  let redis: RedisServerHandle;
  let orchDir: string;
  let orchestrator: Awaited<ReturnType<typeof spawnOrchestrator>>;
  let control: TestControl;
  const boards: Array<ChildHandle & { nodeId: string }> = [];
  let env: NodeJS.ProcessEnv;

  const cli = (args: string[]): Promise<CliResult> => new Promise((resolve) => {
    execFile(process.execPath, [ORCHESTRATOR_MAIN, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });

  const follow = (args: string[]): Follower => {
    const child = spawn(process.execPath, [ORCHESTRATOR_MAIN, 'logs', '-f', '--json', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: LogLine[] = [];
    const stderr: string[] = [];
    let buffered = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      lines.push(...parseLines(parts.join('\n')));
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
    const stop = () => child.kill('SIGTERM');
    cleanup.add(async () => {
      stop();
      await exited;
    });
    return { lines, stderr, exited, stop };
  };

  beforeAll(async () => {
    redis = await startRedis();
    cleanup.add(() => redis.stop());
    const dir = await tempDir('conclave-logs-e2e-orch-');
    cleanup.add(() => dir.remove());
    orchDir = dir.path;
    orchestrator = await spawnOrchestrator({ redisUrl: redis.url, dataDir: orchDir });
    cleanup.add(() => orchestrator.stop());
    env = { ...process.env, CONCLAVE_ADDRESS: orchestrator.address, CONCLAVE_OPERATOR_TOKEN: orchestrator.operatorToken };
    control = createTestControl(orchestrator);
    cleanup.add(async () => control.close());
    await control.addModel('affine', model.bytes);
  }, 60_000);
  afterAll(() => cleanup.run());

  it("shows both boards' NODE- lines to a follower started before they joined", async () => {
    const follower = follow(['--prefix', 'NODE-']);
    // The follower is live once it has read the (empty) history; a first line would race it.
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const name of ['pi-01', 'pi-02']) {
      const dir = await tempDir('conclave-logs-e2e-node-');
      cleanup.add(() => dir.remove());
      const board = await spawnNodeAgent({ orchestrator, dataDir: dir.path, name, slots: 1 });
      cleanup.add(() => board.stop());
      boards.push(board);
    }
    await waitUntil(() => boards.every((b) => follower.lines.some((l) => l.node === b.nodeId && /connected to orchestrator/.test(l.message))), {
      what: "both boards' 'connected' lines in `logs -f`", timeoutMs: 15_000,
    });
    for (const line of follower.lines) {
      expect(line.prefix).toBe('NODE');
      expect(['pi-01', 'pi-02']).toContain(line.nodeName);
    }
    // Nothing twice.
    expect(new Set(follower.lines.map((l) => l.id)).size).toBe(follower.lines.length);
    follower.stop();
    expect(await follower.exited).toBe(0);
  });

  it("shows one successful job's lines from the orchestrator and its node, and `--job -f` exits when it ends", async () => {
    const job = await control.submit({ infer: { model: 'affine', inputs: wireInputs(affineInput(1)) } });
    const jobFollower = follow(['--job', job.id]);
    expect(await jobFollower.exited).toBe(0);
    expect(jobFollower.stderr.join('')).toMatch(/has ended/);
    const done = await control.wait(job.id);
    expect(done.state).toBe('JOB_STATE_COMPLETED');

    const { stdout, code } = await cli(['logs', '--job', job.id, '--json']);
    expect(code).toBe(0);
    const lines = parseLines(stdout);
    expect(lines.every((l) => l.jobId === job.id)).toBe(true);
    const orch = lines.filter((l) => l.prefix === 'ORCH').map((l) => l.message).join('\n');
    const node = lines.filter((l) => l.prefix === 'NODE');
    expect(orch).toMatch(/queued/);
    expect(orch).toMatch(/completed/);
    expect(node.some((l) => l.node === done.node)).toBe(true);
    expect(node.map((l) => l.message).join('\n')).toMatch(/completed/);
    // The follower saw the same lines, through the end.
    expect(jobFollower.lines.map((l) => l.id)).toEqual(lines.map((l) => l.id));

    const listed = await cli(['jobs', 'list', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(job.id);
  });

  it('keeps a killed board\'s lines, and refuses an unknown node or a malformed --since with its code', async () => {
    const killed = boards[1] as (typeof boards)[number];
    killed.process.kill('SIGKILL');
    await killed.exited;
    const { stdout, code } = await cli(['logs', '--node', 'pi-02', '--json']);
    expect(code).toBe(0);
    const lines = parseLines(stdout);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((l) => l.node === killed.nodeId)).toBe(true);

    const unknown = await cli(['logs', '--node', 'pi-99']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/ORCH-REQ-260/);
    const since = await cli(['logs', '--since', 'yesterday-ish']);
    expect(since.code).not.toBe(0);
    expect(since.stderr).toMatch(/ORCH-REQ-261/);
    const job = await cli(['logs', '--job', 'no-such-job']);
    expect(job.stderr).toMatch(/ORCH-REQ-262/);
  });

  it('follows on across an orchestrator restart, with no line twice', async () => {
    const follower = follow(['--prefix', 'ORCH-']);
    await waitUntil(() => follower.lines.length > 0, { what: 'the history', timeoutMs: 10_000 });
    const readyLines = () => follower.lines.filter((l) => l.message === 'orchestrator ready').length;
    const readyBefore = readyLines();
    const port = Number(orchestrator.address.split(':').pop());
    await orchestrator.stop();
    orchestrator = await spawnOrchestrator({ redisUrl: redis.url, dataDir: orchDir, grpcPort: port });
    cleanup.add(() => orchestrator.stop());
    await waitUntil(() => readyLines() > readyBefore, { what: "the new orchestrator's ready line in the resumed follow", timeoutMs: 30_000 });
    expect(follower.stderr.join('')).toMatch(/following again after \d+-\d+/);
    expect(new Set(follower.lines.map((l) => l.id)).size).toBe(follower.lines.length);
    follower.stop();
  });
});
