import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureLogger, type ConclaveError } from '@conclave/common';
import { HAILO_SIDECAR_SCRIPT, fakeSidecarEnv, setFakeFaults, writeFakeHef } from '@conclave/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { SidecarSupervisor, parseSidecarLogLine, type SidecarState, type SidecarSupervisorOptions } from './sidecar-supervisor.js';

// The real sidecar (deploy/hailo-sidecar) on the fake HailoRT (packages/testing/fake-hailort).
const SIDECAR_COMMAND = ['python3', HAILO_SIDECAR_SCRIPT];

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sidecar-supervisor-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Harness {
  readonly supervisor: SidecarSupervisor;
  readonly dir: string;
  readonly states: Array<{ state: SidecarState; at: number; reason?: ConclaveError; retryInMs?: number }>;
  readonly lines: string[];
  readonly faults: string;
  waitFor(state: SidecarState, count?: number, timeoutMs?: number): Promise<void>;
}

async function supervise(overrides: Partial<SidecarSupervisorOptions> = {}): Promise<Harness> {
  const dir = await tempDir();
  const faults = join(dir, 'faults.json');
  const { logger, lines } = captureLogger('NODE');
  const supervisor = new SidecarSupervisor({
    logger,
    socketPath: join(dir, 'hailo.sock'),
    command: SIDECAR_COMMAND,
    env: fakeSidecarEnv({ faultsPath: faults }),
    restartBaseMs: 200,
    random: () => 0.5,
    stopGraceMs: 1_000,
    ...overrides,
  });
  const states: Harness['states'] = [];
  supervisor.onChange((state, change) => {
    states.push({
      state, at: performance.now(),
      ...(change.reason ? { reason: change.reason } : {}),
      ...(change.retryInMs !== undefined ? { retryInMs: change.retryInMs } : {}),
    });
  });
  cleanups.push(() => supervisor.stop());
  supervisor.start();
  const waitFor = async (state: SidecarState, count = 1, timeoutMs = 15_000) => {
    const deadline = performance.now() + timeoutMs;
    while (states.filter((s) => s.state === state).length < count) {
      if (performance.now() > deadline) throw new Error(`not ${state} x${count}; states: ${states.map((s) => s.state).join(' ')}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  return { supervisor, dir, states, lines, faults, waitFor };
}

/** A fake HEF computing 2x + 1 on four float32 values (the fake HailoRT's documented format). */
async function writeScaleHef(dir: string): Promise<string> {
  const path = join(dir, 'scale.hef');
  await writeFakeHef(path, {
    arch: 'hailo8',
    inputs: [{ name: 'in', shape: [4], dtype: 'float32' }],
    outputs: [{ name: 'out', shape: [4], dtype: 'float32' }],
    op: { kind: 'scale', a: 2, b: 1 },
  });
  return path;
}

function floats(values: number[]): Buffer {
  return Buffer.from(new Float32Array(values).buffer);
}

describe('parseSidecarLogLine', () => {
  it('takes the section and level of a NODE- line and nothing else', () => {
    expect(parseSidecarLogLine('NODE-HEALTH info hailo device opened arch=HAILO8')).toEqual({
      section: 'HEALTH', level: 'info', text: 'hailo device opened arch=HAILO8',
    });
    expect(parseSidecarLogLine('NODE-NOPE info x')).toBeUndefined();
    expect(parseSidecarLogLine('Traceback (most recent call last):')).toBeUndefined();
  });
});

describe('SidecarSupervisor without a sidecar', () => {
  it('reports a command that does not exist as NODE-STATE-731, keeps retrying, and stops', async () => {
    const h = await supervise({ command: ['/nonexistent/conclave-hailo-sidecar'] });
    await h.waitFor('down', 2);
    const downs = h.states.filter((s) => s.state === 'down');
    expect(downs.map((d) => d.reason?.code)).toEqual(['NODE-STATE-731', 'NODE-STATE-731']);
    expect(downs[0]!.reason!.message).toContain('cannot run /nonexistent/conclave-hailo-sidecar: ENOENT');
    expect(downs.map((d) => d.retryInMs)).toEqual([100, 200]);
    expect(h.supervisor.client).toBeUndefined();
    await h.supervisor.stop();
    expect(h.supervisor.state).toBe('stopped');
    expect(h.states.at(-1)!.state).toBe('stopped');
  });

  it('in attach mode refuses a socket of the wrong mode with NODE-AUTH-590', async () => {
    const dir = await tempDir();
    const socketPath = join(dir, 'hailo.sock');
    const { createServer } = await import('node:net');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    await chmod(socketPath, 0o666);
    const h = await supervise({ command: undefined, socketPath });
    await h.waitFor('down');
    expect(h.supervisor.mode).toBe('attach');
    expect(h.states.find((s) => s.state === 'down')!.reason!.code).toBe('NODE-AUTH-590');
  });
});

describe('SidecarSupervisor with the real sidecar on the fake HailoRT', () => {
  it('spawns it, reads the device, relogs its stderr, and runs a HEF through it', async () => {
    const h = await supervise();
    const client = await h.supervisor.whenUp(15_000);
    expect(h.supervisor.state).toBe('up');
    expect(h.supervisor.device).toMatchObject({ arch: 'HAILO8', boardName: 'fake' });
    expect(h.lines.some((l) => l.includes('NODE-HEALTH') && l.includes('hailo sidecar'))).toBe(true);
    const hefPath = await writeScaleHef(h.dir);
    const loaded = await client.load({ modelId: 'scale', hefPath });
    expect(loaded.inputs.map((v) => v.name)).toEqual(['in']);
    const result = await client.infer('scale', [{ name: 'in', dtype: 'float32', dims: [1, 4], data: floats([0, 1, 2, 3]) }]);
    const out = result.outputs[0]!;
    expect([...new Float32Array(out.data.buffer.slice(out.data.byteOffset, out.data.byteOffset + out.data.length))]).toEqual([1, 3, 5, 7]);
    expect(result.batchedFrames).toBe(1);
  });

  it('kill -9 mid-infer: the request fails with NODE-NET-631 within a second, and the sidecar comes back after the backoff', async () => {
    const h = await supervise();
    const client = await h.supervisor.whenUp(15_000);
    const hefPath = await writeScaleHef(h.dir);
    await client.load({ modelId: 'scale', hefPath });
    await setFakeFaults(h.faults, { slow_ms: 10_000 });
    const pid = h.supervisor.pid!;
    const inflight = client.infer('scale', [{ name: 'in', dtype: 'float32', dims: [1, 4], data: floats([0, 1, 2, 3]) }], { timeoutMs: 20_000 });
    const failure = inflight.then(() => undefined, (err: ConclaveError) => ({ err, at: performance.now() }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const killedAt = performance.now();
    process.kill(pid, 'SIGKILL');
    const failed = await failure;
    expect(failed?.err.code).toBe('NODE-NET-631');
    expect(failed!.at - killedAt).toBeLessThan(1_000);

    await h.waitFor('up', 2);
    const down = h.states.find((s) => s.state === 'down')!;
    expect(down.at - killedAt).toBeLessThan(1_000);
    expect(down.reason!.code).toBe('NODE-STATE-730');
    expect(down.reason!.message).toContain('killed by SIGKILL');
    expect(down.retryInMs).toBe(100);
    const restarted = h.states.filter((s) => s.state === 'starting').at(-1)!;
    expect(restarted.at - down.at).toBeGreaterThanOrEqual(95);
    expect(h.supervisor.pid).not.toBe(pid);
    expect(isRunning(pid)).toBe(false);
    await setFakeFaults(h.faults, {});
    expect((await h.supervisor.client!.health()).ok).toBe(true);
  });

  it('stop() leaves no child and never restarts', async () => {
    const h = await supervise();
    await h.supervisor.whenUp(15_000);
    const pid = h.supervisor.pid!;
    expect(isRunning(pid)).toBe(true);
    await h.supervisor.stop();
    expect(isRunning(pid)).toBe(false);
    expect(h.supervisor.state).toBe('stopped');
    expect(h.supervisor.pid).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(h.states.at(-1)!.state).toBe('stopped');
    expect(h.states.filter((s) => s.state === 'up')).toHaveLength(1);
  });

  it('attaches to a sidecar someone else runs and follows it down and up', async () => {
    const dir = await tempDir();
    const socketPath = join(dir, 'hailo.sock');
    const runSidecar = () => {
      const child = spawn('python3', [HAILO_SIDECAR_SCRIPT, '--socket', socketPath], {
        env: { ...process.env, ...fakeSidecarEnv() }, stdio: ['ignore', 'ignore', 'ignore'],
      });
      cleanups.push(async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await new Promise((resolve) => child.once('exit', resolve));
        }
      });
      return child;
    };
    const first = runSidecar();
    const h = await supervise({ command: undefined, socketPath, restartBaseMs: 100 });
    await h.supervisor.whenUp(15_000);
    expect(h.supervisor.pid).toBeUndefined();
    // Tries before the sidecar listens are down with NODE-NET-630; the one that counts comes after up.
    const downsBefore = h.states.filter((s) => s.state === 'down').length;
    first.kill('SIGKILL');
    await h.waitFor('down', downsBefore + 1);
    expect(h.states.filter((s) => s.state === 'down').at(-1)!.reason!.code).toBe('NODE-NET-631');
    runSidecar();
    await h.waitFor('up', 2);
    expect(h.supervisor.device?.arch).toBe('HAILO8');
  });
});
