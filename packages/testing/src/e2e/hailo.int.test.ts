// The Hailo backend end to end, as an operator meets it: `orchestrator start`, a `node-agent
// start --backend hailo` child on a fake device tree running the real sidecar on the fake
// HailoRT, a bundle added with `orchestrator models add --hef`, jobs, and a kill -9 of the
// sidecar. Needs the build (`pnpm build`) and python3 with numpy.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import type { RedisServerHandle } from '@conclave/common';
import type { NodeInfo__Output } from '@conclave/protocol';
import type { ChildHandle } from '../child-process.js';
import { createTestControl, type TestControl } from '../control.js';
import { spawnNodeAgent, spawnOrchestrator, tempDir } from '../fleet.js';
import { writeFakeDeviceTree } from '../hailo/fake-device-tree.js';
import { HAILO_SIDECAR_SCRIPT, fakeSidecarEnv, setFakeFaults } from '../hailo/fake-hailort.js';
import { hailoBundle } from '../hailo/hailo-bundle.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { Cleanup, mismatch, wireInputs } from './e2e-support.js';


interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const bundle = hailoBundle({ post: true, seed: 5 });

describe('a board with a Hailo-8 (fake device tree, real sidecar on the fake HailoRT)', () => {
  const cleanup = new Cleanup();
  let redis: RedisServerHandle;
  let orchestrator: Awaited<ReturnType<typeof spawnOrchestrator>>;
  let control: TestControl;
  let board: ChildHandle & { nodeId: string };
  let boardDir: string;
  let env: NodeJS.ProcessEnv;
  let modelSha = '';

  const cli = (args: string[]): Promise<CliResult> => new Promise((resolve) => {
    execFile(process.execPath, [ORCHESTRATOR_MAIN, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
  const node = (): Promise<NodeInfo__Output> => control.getNode(board.nodeId);
  const modelOn = async (): Promise<string | undefined> => (await node()).modelBackends.find((m) => m.sha256 === modelSha)?.backend;

  beforeAll(async () => {
    redis = await startRedis();
    cleanup.add(() => redis.stop());
    const orchDir = await tempDir('conclave-hailo-e2e-orch-');
    cleanup.add(() => orchDir.remove());
    orchestrator = await spawnOrchestrator({ redisUrl: redis.url, dataDir: orchDir.path });
    cleanup.add(() => orchestrator.stop());
    env = { ...process.env, CONCLAVE_ADDRESS: orchestrator.address, CONCLAVE_OPERATOR_TOKEN: orchestrator.operatorToken };
    control = createTestControl(orchestrator);
    cleanup.add(async () => control.close());

    const files = await tempDir('conclave-hailo-e2e-bundle-');
    cleanup.add(() => files.remove());
    const paths = await bundle.writeTo(files.path);
    const added = await cli([
      'models', 'add', 'affine-relu', paths.model, '--hef', `hailo8=${paths.hef}`, '--post', paths.post!,
      '--hailo-manifest', paths.manifest, '--json',
    ]);
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    modelSha = (JSON.parse(added.stdout) as { sha256: string }).sha256;

    const dir = await tempDir('conclave-hailo-e2e-node-');
    cleanup.add(() => dir.remove());
    boardDir = dir.path;
    const tree = join(boardDir, 'fake-root');
    await writeFakeDeviceTree(tree, { linkSpeed: '8.0 GT/s PCIe', temperatureC: 51.5 });
    board = await spawnNodeAgent({
      orchestrator, dataDir: join(boardDir, 'data'), name: 'pi-hailo', slots: 2,
      args: ['--backend', 'hailo', '--detection-root', tree, '--hailo-sidecar-command', `python3 ${HAILO_SIDECAR_SCRIPT}`],
      env: { ...process.env, ...fakeSidecarEnv({ faultsPath: join(boardDir, 'faults.json') }) },
    });
    cleanup.add(() => board.stop());
  }, 90_000);
  afterAll(() => cleanup.run());

  it("reports hailo active with the chip's facts", async () => {
    await waitUntil(async () => (await node()).accelerator?.state === 'active', { what: 'hailo active in NodeInfo', timeoutMs: 20_000 });
    const info = await node();
    expect(info.backends).toEqual(['cpu', 'hailo']);
    expect(info.backendActive).toBe('hailo');
    expect(info.accelerator).toMatchObject({ kind: 'hailo', arch: 'HAILO8', pcieGen: 3, pcieWidth: 1, driverVersion: '4.20.0', temperatureC: 51.5 });
    expect(info.accelerator!.hailortVersion).not.toBe('');
    const listed = await cli(['nodes', 'list']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/pi-hailo.*hailo HAILO8/);
  }, 30_000);

  it('runs a job that requires hailo there, with the outputs of the CPU reference, and says the model runs on hailo', async () => {
    const inputs = bundle.reference.sampleInputs(4);
    const job = await control.run('affine-relu', wireInputs(inputs), { requirements: { accelerator: 'hailo', capability: '', preferAccelerator: '' } });
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    expect(job.node).toBe(board.nodeId);
    expect(mismatch(job, bundle.reference, inputs)).toBeUndefined();
    await waitUntil(async () => (await modelOn()) === 'hailo', { what: 'the model on hailo in NodeInfo', timeoutMs: 5_000 });
    const shown = await cli(['nodes', 'get', 'pi-hailo']);
    expect(shown.stdout).toMatch(/hailo/);
    expect(shown.stdout).toMatch(/golden check passed/);
  }, 30_000);

  it('moves the model to the CPU within a second of a kill -9 of the sidecar, says so, keeps serving, and returns to hailo', async () => {
    const socket = join(boardDir, 'data', 'hailo.sock');
    const pid = await sidecarPid(socket);
    // The chip held by another process once the sidecar restarts: it stays down, and the CLI can be
    // read while it is (a sidecar back within the 250 ms backoff would race the CLI's start).
    const faults = join(boardDir, 'faults.json');
    await setFakeFaults(faults, { device_busy: true });
    const killedAt = performance.now();
    process.kill(pid, 'SIGKILL');
    await waitUntil(async () => (await modelOn()) === 'cpu', { what: 'the model on the cpu in NodeInfo', timeoutMs: 5_000, intervalMs: 20 });
    const movedMs = performance.now() - killedAt;
    expect(movedMs, `moved after ${Math.round(movedMs)} ms`).toBeLessThan(1_000);
    const info = await node();
    expect(info.modelBackends.find((m) => m.sha256 === modelSha)?.reason).toMatch(/sidecar|NODE-NET-631|NODE-STATE-730/);

    // `nodes list` and `nodes get` say so.
    await waitUntil(async () => /pi-hailo.*hailo unavailable/.test((await cli(['nodes', 'list'])).stdout), {
      what: '`nodes list` showing hailo unavailable', timeoutMs: 10_000,
    });
    const shown = (await cli(['nodes', 'get', 'pi-hailo'])).stdout;
    expect(shown).toMatch(/\bcpu\b.*(sidecar|NODE-)/);

    // Jobs keep completing meanwhile, on the CPU.
    const inputs = bundle.reference.sampleInputs(2);
    const job = await control.run('affine-relu', wireInputs(inputs));
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    expect(mismatch(job, bundle.reference, inputs)).toBeUndefined();

    // The logs say so, with the code.
    await waitUntil(async () => {
      const logs = await cli(['logs', '--node', board.nodeId, '--json']);
      return logs.stdout.includes('NODE-HEALTH-911');
    }, { what: 'NODE-HEALTH-911 in `orchestrator logs`', timeoutMs: 10_000 });

    // The chip free again: the supervisor's next restart holds, and the model goes back to the chip.
    await setFakeFaults(faults, {});
    await waitUntil(async () => (await modelOn()) === 'hailo', { what: 'the model back on hailo', timeoutMs: 40_000 });
    expect(await sidecarPid(socket)).not.toBe(pid);
    expect((await node()).accelerator?.state).toBe('active');
  }, 90_000);
});

/** The sidecar child serving `socket`: its command line names the socket, which is unique to this board. */
async function sidecarPid(socket: string): Promise<number> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.some((a) => a.endsWith('conclave-hailo-sidecar')) && argv.includes(socket)) pids.push(Number(entry));
  }
  expect(pids).toHaveLength(1);
  return pids[0]!;
}
