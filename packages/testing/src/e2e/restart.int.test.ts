// Runs the built CLIs (`pnpm exec tsc -b packages/testing`): orchestrator and nodes are child processes.
import { cp } from 'node:fs/promises';
import { basename } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_DIR_LOCK_FILE, type RedisServerHandle } from '@conclave/common';
import { CHAT_SOCKET_FILE, NODE_AGENT_MAIN, nodeAgentStartArgv } from '@conclave/node-agent';
import { spawnNode } from '../child-process.js';
import type { ChildHandle } from '../child-process.js';
import { createTestControl } from '../control.js';
import type { TestControl } from '../control.js';
import { spawnNodeAgent, spawnOrchestrator, tempDir } from '../fleet.js';
import { affineModel } from '../onnx/affine-model.js';
import { waitUntil } from '../wait-until.js';
import { affineInput, Cleanup, mismatch, startChildOrchestrator, wireInputs } from './e2e-support.js';
import type { ChildOrchestratorSetup } from './e2e-support.js';

type NodeChild = ChildHandle & { nodeId: string };

const model = affineModel({ seed: 5 });

describe('restarts', () => {
  const cleanup = new Cleanup();
  let redis: RedisServerHandle;
  let orchDir: string;
  let orchestrator: ChildOrchestratorSetup['orchestrator'];
  let control: TestControl;

  beforeAll(async () => {
    ({ redis, dataDir: orchDir, orchestrator, control } = await startChildOrchestrator(cleanup));
    await control.addModel('affine', model.bytes);
  });

  afterAll(() => cleanup.run());

  async function nodeDir(): Promise<string> {
    const dir = await tempDir('conclave-e2e-node-');
    cleanup.add(() => dir.remove());
    return dir.path;
  }

  async function startNode(dataDir: string, name: string): Promise<NodeChild> {
    const node = await spawnNodeAgent({ orchestrator, dataDir, name, slots: 1 });
    cleanup.add(async () => {
      node.process.kill('SIGCONT');
      await node.stop();
    });
    return node;
  }

  async function stateOf(nodeId: string): Promise<string | undefined> {
    return (await control.listNodes()).find((n) => n.id === nodeId)?.state;
  }

  /** Runs a few jobs with exact outputs and returns the nodes they ran on. */
  async function runJobs(count: number, offset: number): Promise<Set<string>> {
    const inputs = Array.from({ length: count }, (_, n) => affineInput(offset + n));
    const jobs = await Promise.all(inputs.map((x) => control.run('affine', wireInputs(x))));
    expect(jobs.map((job, n) => mismatch(job, model, inputs[n] ?? {})).filter((m) => m !== undefined)).toEqual([]);
    return new Set(jobs.map((j) => j.node));
  }

  it('a node reconnects as the same node after the orchestrator restarts on the same port', async () => {
    const node = await startNode(await nodeDir(), 'survivor');
    expect(await runJobs(3, 0)).toEqual(new Set([node.nodeId]));

    orchestrator.process.kill('SIGKILL');
    await orchestrator.exited;
    control.close();
    await node.waitFor(/NODE-NET-60[12]/);

    const port = Number(orchestrator.address.split(':').pop());
    orchestrator = await spawnOrchestrator({ redisUrl: redis.url, dataDir: orchDir, grpcPort: port });
    cleanup.add(() => orchestrator.stop());
    control = createTestControl(orchestrator);
    cleanup.add(() => control.close());

    await waitUntil(async () => (await stateOf(node.nodeId)) === 'connected', {
      what: 'the node back on the new orchestrator', timeoutMs: 40_000, intervalMs: 100,
    });
    expect(node.lines.filter((l) => /connected to orchestrator/.test(l))).toHaveLength(2);
    // The model record survived in Redis and its file in the data dir: new jobs run on the node.
    expect(await runJobs(3, 100)).toEqual(new Set([node.nodeId]));
    await node.stop();
  });

  it('a node restarted with the same data dir keeps its node id', async () => {
    const dataDir = await nodeDir();
    const first = await startNode(dataDir, 'phoenix');
    expect(await runJobs(2, 200)).toEqual(new Set([first.nodeId]));
    expect(await first.stop()).toBe(0);
    await waitUntil(async () => (await stateOf(first.nodeId)) === 'disconnected', { what: 'the node disconnected' });

    const second = await startNode(dataDir, 'phoenix');
    expect(second.nodeId).toBe(first.nodeId);
    await waitUntil(async () => (await stateOf(first.nodeId)) === 'connected', { what: 'the node connected again' });
    expect((await control.listNodes()).filter((n) => n.id === first.nodeId)).toHaveLength(1);
    expect(await runJobs(2, 300)).toEqual(new Set([first.nodeId]));
    await second.stop();
  });

  it('a node that comes back while its old session still looks alive replaces that session', async () => {
    const dataDir = await nodeDir();
    const old = await startNode(dataDir, 'twin');
    // The same node from a copy of its data dir (a board rebooted, or restored onto new hardware,
    // while its old session lingers): a second process on the very same dir is refused by its lock.
    const copyDir = await nodeDir();
    // Not the lock, nor a file the running node is writing (a durable write's temp file may be
    // gone by the time cp reads it: CI caught it), nor its chat socket (cp cannot copy a socket).
    await cp(dataDir, copyDir, {
      recursive: true, filter: (src) => basename(src) !== DATA_DIR_LOCK_FILE && basename(src) !== CHAT_SOCKET_FILE && !src.endsWith('.tmp'),
    });
    const fresh = spawnNode(NODE_AGENT_MAIN, nodeAgentStartArgv({
      orchestrator: orchestrator.address, dataDir: copyDir, httpPort: 0, name: 'twin', slots: 1,
    }));
    cleanup.add(() => fresh.stop());
    // Silence the old process just before the new one registers: its stream stays open and
    // its session is not yet suspect, so the orchestrator still counts it as connected. (A step
    // inside the start-up, which no readiness signal marks: the log line is the only sign.)
    await fresh.waitFor(/cpu backend started/);
    old.process.kill('SIGSTOP');
    expect((await fresh.ready('node-agent')).node).toBe(old.nodeId);
    await orchestrator.waitFor(/replaced by a new session of the same node/);
    old.process.kill('SIGKILL');
    await old.exited;

    await waitUntil(async () => (await stateOf(old.nodeId)) === 'connected', { what: 'the new session listed' });
    expect((await control.listNodes()).filter((n) => n.id === old.nodeId)).toHaveLength(1);
    expect(await runJobs(3, 400)).toEqual(new Set([old.nodeId]));
    expect(fresh.lines.filter((l) => /NODE-NET-60\d/.test(l))).toEqual([]);
  });
});
