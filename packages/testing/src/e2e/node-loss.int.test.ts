// Runs the built CLIs (`pnpm exec tsc -b packages/testing`): orchestrator and nodes are child processes.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Job__Output } from '@conclave/protocol';
import type { ChildHandle } from '../child-process.js';
import type { TestControl } from '../control.js';
import { spawnNodeAgent, tempDir } from '../fleet.js';
import { heavyModel } from '../onnx/heavy-model.js';
import { waitUntil } from '../wait-until.js';
import { Cleanup, mismatch, startChildOrchestrator, wireInputs } from './e2e-support.js';
import type { ChildOrchestratorSetup } from './e2e-support.js';

type NodeChild = ChildHandle & { nodeId: string };

/** Slow enough (hundreds of ms a run here) that a node dies with jobs in flight. */
const model = heavyModel({ size: 512, layers: 128, batch: 256 });
const inputs = model.sampleInputs();
const wired = wireInputs(inputs);

describe('losing a node with jobs in flight', () => {
  const cleanup = new Cleanup();
  const perTest = new Cleanup();
  let orchestrator: ChildOrchestratorSetup['orchestrator'];
  let control: TestControl;

  beforeAll(async () => {
    ({ orchestrator, control } = await startChildOrchestrator(cleanup));
    await control.addModel('heavy', model.bytes);
  });

  afterEach(() => perTest.run());
  afterAll(() => cleanup.run());

  async function startNode(name: string): Promise<NodeChild> {
    const dir = await tempDir('conclave-e2e-node-');
    perTest.add(() => dir.remove());
    const node = await spawnNodeAgent({ orchestrator, dataDir: dir.path, name, slots: 2 });
    perTest.add(async () => {
      node.process.kill('SIGCONT');
      await node.stop();
    });
    return node;
  }

  /** Two nodes that both hold the model loaded, so that a job may start on either. */
  async function twoWarmNodes(names: [string, string]): Promise<[NodeChild, NodeChild]> {
    const nodes = [await startNode(names[0]), await startNode(names[1])] as [NodeChild, NodeChild];
    const ids = new Set(nodes.map((n) => n.nodeId));
    await waitUntil(async () => (await control.listNodes()).filter((n) => ids.has(n.id) && n.state === 'connected').length === 2, {
      what: 'both nodes connected',
    });
    const used = new Set<string>();
    for (let round = 0; round < 5 && used.size < 2; round++) {
      const jobs = await Promise.all(Array.from({ length: 4 }, () => control.run('heavy', wired)));
      for (const job of jobs) used.add(job.node);
    }
    expect([...used].sort()).toEqual([...ids].sort());
    return nodes;
  }

  /** Submits `count` jobs and resolves once at least one of them runs on `node`, with their ids. */
  async function submitUntilRunningOn(node: NodeChild, count: number): Promise<{ ids: string[]; onNode: string[] }> {
    const ids = await Promise.all(Array.from({ length: count }, async () => (await control.infer('heavy', wired)).id));
    const onNode = await waitUntil(async () => {
      const jobs = await Promise.all(ids.map((id) => control.get(id)));
      const running = jobs.filter((j) => j.state === 'JOB_STATE_RUNNING' && j.node === node.nodeId).map((j) => j.id);
      return running.length > 0 ? running : undefined;
    }, { what: `a job running on ${node.nodeId}`, intervalMs: 10 });
    return { ids, onNode };
  }

  function expectAllExact(jobs: Job__Output[]): void {
    expect(jobs.map((job) => mismatch(job, model, inputs)).filter((m) => m !== undefined)).toEqual([]);
  }

  /** Jobs that were running on the lost node and did not finish there ran again elsewhere. */
  function expectMoved(jobs: Job__Output[], onLost: string[], lost: NodeChild, survivor: NodeChild): void {
    const moved = jobs.filter((j) => onLost.includes(j.id) && j.node !== lost.nodeId);
    expect(moved.length).toBeGreaterThan(0);
    for (const job of moved) {
      expect(job.node).toBe(survivor.nodeId);
      expect(job.attempts).toBeGreaterThan(1);
    }
  }

  it('SIGKILL: the jobs in flight go back to the queue and complete on the other node', async () => {
    const [victim, survivor] = await twoWarmNodes(['kill-a', 'kill-b']);
    const { ids, onNode } = await submitUntilRunningOn(victim, 8);
    victim.process.kill('SIGKILL');
    const jobs = await Promise.all(ids.map((id) => control.wait(id, 30_000)));
    expectAllExact(jobs);
    expectMoved(jobs, onNode, victim, survivor);
    await orchestrator.waitFor(new RegExp(`node session closed .*node=${victim.nodeId}|node=${victim.nodeId}.*node session closed`));
  });

  it('SIGSTOP: the silent node is suspect, then dead, its jobs run elsewhere; after SIGCONT it reconnects', async () => {
    const [victim, survivor] = await twoWarmNodes(['stop-a', 'stop-b']);
    const { ids, onNode } = await submitUntilRunningOn(victim, 6);
    victim.process.kill('SIGSTOP');
    const stateOf = async () => (await control.listNodes()).find((n) => n.id === victim.nodeId)?.state;
    await waitUntil(async () => (await stateOf()) === 'suspect', { what: 'victim suspect', timeoutMs: 10_000, intervalMs: 100 });
    await waitUntil(async () => (await stateOf()) === 'dead', { what: 'victim dead', timeoutMs: 10_000, intervalMs: 100 });

    const jobs = await Promise.all(ids.map((id) => control.wait(id, 30_000)));
    expectAllExact(jobs);
    expectMoved(jobs, onNode, victim, survivor);

    victim.process.kill('SIGCONT');
    await waitUntil(async () => (await stateOf()) === 'connected', { what: 'victim connected again', timeoutMs: 20_000, intervalMs: 100 });
    expect(victim.lines.filter((l) => /connected to orchestrator/.test(l)).length).toBeGreaterThanOrEqual(2);
  });
});
