// Runs the built CLIs (`pnpm build`): the orchestrator and the local fleet are child processes,
// killed or signalled the way a terminal, an operator or the OOM killer would; nothing they
// started may outlive them. Pids come from the lock and pid files, never from `ps` by name:
// other test files run redis-servers and node agents of their own at the same time.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { DATA_DIR_LOCK_FILE, findFreePort, isProcessRunning, parseReadinessLine, redisGuardianPids } from '@conclave/common';
import { FLEET_MAIN } from '@conclave/fleet';
import { spawnOrchestrator, tempDir } from '../fleet.js';
import { waitUntil } from '../wait-until.js';
import { Cleanup, within } from './e2e-support.js';

/** How long a fleet may take to print its readiness line; the model server alone takes ~7 s on 2 cores. */
const FLEET_START_MS = 60_000;
/** How long a clean shutdown of the fleet may take; it takes ~1 s. */
const FLEET_STOP_MS = 20_000;


/** The names of `pids` still alive once all are gone or `timeoutMs` has passed: [] is the good outcome. */
async function stillAliveAfter(pids: Record<string, number>, timeoutMs: number): Promise<string[]> {
  const alive = () => Object.entries(pids).filter(([, pid]) => isProcessRunning(pid)).map(([name, pid]) => `${name} (pid ${pid})`);
  const deadline = Date.now() + timeoutMs;
  while (alive().length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  return alive();
}


function lockPath(dir: string): string {
  return join(dir, DATA_DIR_LOCK_FILE);
}

function lockPid(dir: string): number {
  return (JSON.parse(readFileSync(lockPath(dir), 'utf8')) as { pid: number }).pid;
}

/** The embedded redis-server of the orchestrator on `orchestratorDir`, and its one guardian. */
async function embeddedRedis(orchestratorDir: string): Promise<{ redis: number; guardian: number }> {
  const redis = await waitUntil(() => Number(readFileSync(join(orchestratorDir, 'redis', 'redis.pid'), 'utf8').trim()), {
    what: 'redis.pid', timeoutMs: 5_000,
  });
  const guardians = redisGuardianPids(redis);
  expect(guardians).toHaveLength(1);
  const guardian = guardians[0] ?? -1;
  expect(isProcessRunning(redis)).toBe(true);
  expect(isProcessRunning(guardian)).toBe(true);
  return { redis, guardian };
}

function isLogLineAt(level: 'WARN' | 'ERROR') {
  return (line: string) => line.includes(` ${level} `);
}

interface FleetChild {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves once the fleet's readiness line is out, with the index of that line in stdout. */
  running(timeoutMs?: number): Promise<number>;
  /** Exit code and signal, once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Once it has exited and both output streams have been read to their end. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `node packages/fleet/dist/main.js` as a terminal would start it: its own process group, so that
 * `process.kill(-pid, signal)` is a Ctrl-C or a hang-up; stdout and stderr kept apart; no IPC channel.
 */
function spawnFleet(dataDir: string, modelServerPort = -1): FleetChild {
  const child = spawn(
    process.execPath,
    [
      FLEET_MAIN, '--data-dir', dataDir, '--grpc-port', '0', '--http-port', '0',
      // Two words, as the README writes it: `-1` is a value here, not an option.
      '--model-server-port', String(modelServerPort), '--nodes', '1', '--demo-jobs', '1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const stdout: string[] = [];
  const stderr: string[] = [];
  const stdoutDone = new Promise<void>((resolve) => createInterface({ input: child.stdout }).on('line', (l) => stdout.push(l)).once('close', resolve));
  const stderrDone = new Promise<void>((resolve) => createInterface({ input: child.stderr }).on('line', (l) => stderr.push(l)).once('close', resolve));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      process.off('exit', killOnExit);
      resolve({ code, signal });
    }),
  );
  const closed = Promise.all([exited, stdoutDone, stderrDone]).then(([result]) => result);
  let gone = false;
  void exited.then(() => (gone = true));
  return {
    process: child,
    pid: child.pid ?? -1,
    stdout,
    stderr,
    exited,
    closed,
    running: (timeoutMs = FLEET_START_MS) =>
      waitUntil(() => {
        const at = stdout.findIndex((l) => parseReadinessLine(l)?.role === 'local-fleet');
        if (at >= 0) return at + 1;
        if (gone) throw new Error(`the fleet exited before it ran:\n${[...stdout, ...stderr].slice(-15).join('\n')}`);
        return undefined;
      }, { what: 'the local fleet ready', timeoutMs, intervalMs: 50 }).then((at) => at - 1),
  };
}

interface FleetProcesses {
  node: number;
  redis: number;
  guardian: number;
}

describe('no process outlives the one that started it', { timeout: 90_000 }, () => {
  // In this order: the processes a test started are stopped, what they left is killed, the dirs go.
  const cleanup = new Cleanup();
  const reap = new Cleanup();
  const dirs = new Cleanup();
  afterEach(async () => {
    await cleanup.run();
    await reap.run();
    await dirs.run();
  });

  /** Whatever a test found running is SIGKILLed at its end if still there, so a failure leaks nothing. */
  function reapAtEnd(pids: Record<string, number>): void {
    reap.add(() => {
      for (const pid of Object.values(pids)) if (isProcessRunning(pid)) process.kill(pid, 'SIGKILL');
    });
  }

  async function dataDir(prefix: string): Promise<string> {
    const dir = await tempDir(prefix);
    dirs.add(() => dir.remove());
    return dir.path;
  }

  async function startFleet(dir: string, modelServerPort = -1): Promise<FleetChild> {
    const fleet = spawnFleet(dir, modelServerPort);
    cleanup.add(async () => {
      if (fleet.process.exitCode !== null || fleet.process.signalCode !== null) return;
      process.kill(-fleet.pid, 'SIGINT');
      const timer = setTimeout(() => fleet.process.kill('SIGKILL'), FLEET_STOP_MS);
      await fleet.exited;
      clearTimeout(timer);
    });
    await fleet.running();
    return fleet;
  }

  /** The processes of a running fleet with one node agent, each from its lock or pid file. */
  async function fleetProcesses(fleet: FleetChild, dir: string): Promise<FleetProcesses> {
    expect(lockPid(dir)).toBe(fleet.pid);
    expect(lockPid(join(dir, 'orchestrator'))).toBe(fleet.pid);
    const node = lockPid(join(dir, 'node-1'));
    const { redis, guardian } = await embeddedRedis(join(dir, 'orchestrator'));
    reapAtEnd({ node, redis, guardian });
    expect(isProcessRunning(node)).toBe(true);
    expect(new Set([fleet.pid, node, redis, guardian]).size).toBe(4);
    return { node, redis, guardian };
  }

  /**
   * After `signal` reached the fleet's group: exit 0, one line naming the signal on stdout after
   * its readiness line, no warning or error anywhere, every child gone and every lock removed.
   */
  async function expectCleanShutdown(
    fleet: FleetChild, dir: string, runningAt: number, signal: NodeJS.Signals, { node, redis, guardian }: FleetProcesses,
  ): Promise<void> {
    expect(await within(fleet.closed, FLEET_STOP_MS, 'the fleet exiting')).toEqual({ code: 0, signal: null });
    const announced = fleet.stdout.slice(runningAt + 1).filter((l) => l.includes(': stopping the local fleet'));
    expect(announced).toEqual([`${signal}: stopping the local fleet (nodes, model server, orchestrator, Redis)`]);
    const all = [...fleet.stdout, ...fleet.stderr];
    expect(all.filter(isLogLineAt('WARN'))).toEqual([]);
    expect(all.filter(isLogLineAt('ERROR'))).toEqual([]);
    expect(fleet.stderr.filter((l) => / again: /.test(l))).toEqual([]);
    // In order: the fleet waits for its node and for Redis to exit before it does.
    expect({ node: isProcessRunning(node), redis: isProcessRunning(redis) }).toEqual({ node: false, redis: false });
    // The guardian is told to go when Redis exits, without anyone waiting for it.
    expect(await stillAliveAfter({ guardian }, 2_000)).toEqual([]);
    expect([dir, join(dir, 'orchestrator'), join(dir, 'node-1')].filter((d) => existsSync(lockPath(d)))).toEqual([]);
  }

  it('orchestrator killed with SIGKILL: its guardian stops the embedded redis-server within 5 s', async () => {
    const dir = await dataDir('conclave-orphans-orch-');
    const orchestrator = await spawnOrchestrator({ dataDir: dir });
    cleanup.add(() => orchestrator.stop());
    const { redis, guardian } = await embeddedRedis(dir);
    reapAtEnd({ redis, guardian });
    expect((await orchestrator.waitFor(/redis-server started .*pid=(\d+)/))[1]).toBe(String(redis));

    orchestrator.process.kill('SIGKILL');
    await orchestrator.exited;
    expect(await stillAliveAfter({ redis, guardian }, 5_000)).toEqual([]);
    // SIGTERM, from the guardian: Redis says so in its log (a SIGKILL would leave no line).
    expect(readFileSync(join(dir, 'redis', 'redis.log'), 'utf8')).toMatch(/Received SIGTERM scheduling shutdown/);
  });

  it('orchestrator given SIGHUP (its terminal closed): exits 0 on its own, Redis stopped first, lock removed', async () => {
    const dir = await dataDir('conclave-orphans-orch-');
    const orchestrator = await spawnOrchestrator({ dataDir: dir });
    cleanup.add(() => orchestrator.stop());
    const { redis, guardian } = await embeddedRedis(dir);
    reapAtEnd({ redis, guardian });
    expect(lockPid(dir)).toBe(orchestrator.process.pid);

    orchestrator.process.kill('SIGHUP');
    expect(await within(orchestrator.exited, 15_000, 'the orchestrator exiting')).toBe(0);
    expect(orchestrator.lines.some((l) => /shutting down .*signal=SIGHUP/.test(l))).toBe(true);
    expect(orchestrator.lines.some((l) => /redis-server stopped/.test(l))).toBe(true);
    expect(orchestrator.lines.filter((l) => isLogLineAt('WARN')(l) || isLogLineAt('ERROR')(l))).toEqual([]);
    expect(isProcessRunning(redis)).toBe(false);
    expect(await stillAliveAfter({ guardian }, 2_000)).toEqual([]);
    expect(existsSync(lockPath(dir))).toBe(false);
  });

  it('fleet killed with SIGKILL: Redis, the node agent and the model server are gone within 10 s; a new fleet then starts on the same dir', async () => {
    const dir = await dataDir('conclave-orphans-fleet-');
    const fleet = await startFleet(dir, await findFreePort());
    const { node, redis, guardian } = await fleetProcesses(fleet, dir);
    const modelServer = lockPid(join(dir, 'model-server'));
    reapAtEnd({ modelServer });
    expect(isProcessRunning(modelServer)).toBe(true);
    expect([node, redis, guardian, fleet.pid]).not.toContain(modelServer);

    fleet.process.kill('SIGKILL');
    expect(await fleet.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(await stillAliveAfter({ node, modelServer, redis, guardian }, 10_000)).toEqual([]);
    // What the dead fleet could not remove, the next one takes over.
    expect(existsSync(lockPath(dir))).toBe(true);
    expect(existsSync(lockPath(join(dir, 'orchestrator')))).toBe(true);

    const again = await startFleet(dir);
    const next = await fleetProcesses(again, dir);
    expect(next.redis).not.toBe(redis);
    expect(again.stderr.some((l) => / INFO {2}ORCH-STATE took over a stale data dir lock /.test(l))).toBe(true);
  });

  it('Ctrl-C (SIGINT to the fleet\'s process group): one line on stdout, a quiet shutdown, exit 0, nothing left', async () => {
    const dir = await dataDir('conclave-orphans-fleet-');
    const fleet = await startFleet(dir);
    const runningAt = await fleet.running();
    const pids = await fleetProcesses(fleet, dir);

    process.kill(-fleet.pid, 'SIGINT');
    await expectCleanShutdown(fleet, dir, runningAt, 'SIGINT', pids);
  });

  it('Ctrl-C under pnpm (the group gets SIGINT, then pnpm forwards one more at once): the repeat is the same request', async () => {
    const dir = await dataDir('conclave-orphans-fleet-');
    const fleet = await startFleet(dir);
    const runningAt = await fleet.running();
    const pids = await fleetProcesses(fleet, dir);

    process.kill(-fleet.pid, 'SIGINT');
    // Once the first is handled (two signals sent back to back may merge into one in the kernel),
    // while the shutdown, which takes more than 100 ms, is still under way.
    await waitUntil(() => fleet.stdout.slice(runningAt + 1).some((l) => l.startsWith('SIGINT: stopping')), { what: 'the first SIGINT handled', intervalMs: 5 });
    expect(isProcessRunning(fleet.pid)).toBe(true);
    fleet.process.kill('SIGINT');
    await expectCleanShutdown(fleet, dir, runningAt, 'SIGINT', pids);
  });

  it('SIGHUP to the fleet\'s process group (its terminal closed): the same clean shutdown', async () => {
    const dir = await dataDir('conclave-orphans-fleet-');
    const fleet = await startFleet(dir);
    const runningAt = await fleet.running();
    const pids = await fleetProcesses(fleet, dir);

    process.kill(-fleet.pid, 'SIGHUP');
    await expectCleanShutdown(fleet, dir, runningAt, 'SIGHUP', pids);
  });
});
