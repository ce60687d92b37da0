// Runs the built CLIs (`pnpm exec tsc -b packages/testing`): orchestrator and nodes are child processes.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import { spawnNode } from '../child-process.js';
import type { ChildHandle } from '../child-process.js';
import type { TestControl } from '../control.js';
import { spawnNodeAgent, tempDir } from '../fleet.js';
import { affineModel } from '../onnx/affine-model.js';
import { writeModel } from '../onnx/write-model.js';
import { affineInput, Cleanup, mismatch, startChildOrchestrator, wireInputs } from './e2e-support.js';
import type { ChildOrchestratorSetup } from './e2e-support.js';

type NodeChild = ChildHandle & { nodeId: string };

describe('model transfer to nodes', () => {
  const cleanup = new Cleanup();
  let orchDir: string;
  let scratch: string;
  let orchestrator: ChildOrchestratorSetup['orchestrator'];
  let control: TestControl;

  beforeAll(async () => {
    ({ dataDir: orchDir, orchestrator, control } = await startChildOrchestrator(cleanup));
    const scratchDir = await tempDir('conclave-e2e-files-');
    cleanup.add(() => scratchDir.remove());
    scratch = scratchDir.path;
  });

  afterAll(() => cleanup.run());

  /** `orchestrator models add NAME FILE --json`, as an operator runs it. */
  async function addModelWithCli(name: string, bytes: Uint8Array): Promise<{ sha256: string; size: number }> {
    const file = await writeModel(scratch, name, bytes);
    const cli = spawnNode(ORCHESTRATOR_MAIN, ['models', 'add', name, file, '--address', orchestrator.address, '--json'], {
      CONCLAVE_OPERATOR_TOKEN: orchestrator.operatorToken,
    });
    const code = await cli.exited;
    expect(code, cli.lines.join('\n')).toBe(0);
    return JSON.parse(cli.lines.join('\n')) as { sha256: string; size: number };
  }

  async function startNode(dataDir: string, name: string): Promise<NodeChild> {
    const node = await spawnNodeAgent({ orchestrator, dataDir, name, slots: 1 });
    cleanup.add(() => node.stop());
    return node;
  }

  async function nodeDir(): Promise<string> {
    const dir = await tempDir('conclave-e2e-node-');
    cleanup.add(() => dir.remove());
    return dir.path;
  }

  it('a node fetches a model it lacks, verifies it, keeps it, and does not fetch it again after a restart', async () => {
    const model = affineModel({ seed: 21 });
    const { sha256 } = await addModelWithCli('kept', model.bytes);
    const dataDir = await nodeDir();
    const first = await startNode(dataDir, 'keeper');

    const inputs = affineInput(1);
    const job = await control.run('kept', wireInputs(inputs));
    expect(mismatch(job, model, inputs)).toBeUndefined();
    expect(first.lines.filter((l) => /fetching model/.test(l) && l.includes(sha256))).toHaveLength(1);
    await first.waitFor(new RegExp(`model verified and stored .*sha256=${sha256}`));
    const stored = join(dataDir, 'models', `${sha256}.onnx`);
    expect(Buffer.compare(await readFile(stored), Buffer.from(model.bytes))).toBe(0);
    expect(await first.stop()).toBe(0);

    const second = await startNode(dataDir, 'keeper');
    expect(second.nodeId).toBe(first.nodeId);
    await second.waitFor(/model store verified .*verified=1 removed=0/);
    const again = await control.run('kept', wireInputs(affineInput(2)));
    expect(mismatch(again, model, affineInput(2))).toBeUndefined();
    expect(again.node).toBe(second.nodeId);
    expect(second.lines.filter((l) => /fetching model/.test(l))).toEqual([]);
    await second.stop();
  });

  it('refuses a corrupted transfer: sha256 mismatch on the node, nothing kept, the job fails with a code', async () => {
    const model = affineModel({ seed: 33 });
    const { sha256, size } = await addModelWithCli('tampered', model.bytes);
    // Same length, different bytes: only the digest can tell.
    const onDisk = join(orchDir, 'models', `${sha256}.onnx`);
    const original = await readFile(onDisk);
    expect(original.length).toBe(size);
    await writeFile(onDisk, Buffer.from(original.map((b) => b ^ 0x5a)));
    expect((await stat(onDisk)).size).toBe(size);

    const dataDir = await nodeDir();
    const node = await startNode(dataDir, 'receiver');
    const job = await control.run('tampered', wireInputs(affineInput(3)), { timeoutMs: 20_000 });

    expect(job.state).toBe('JOB_STATE_FAILED');
    expect(job.error?.code).toBe('ORCH-JOB-804');
    expect(job.error?.message).toContain('NODE-LOAD-104');
    await node.waitFor(/NODE-LOAD-104/);
    const left = await readdir(join(dataDir, 'models'));
    expect(left.filter((f) => f.startsWith(sha256))).toEqual([]);
  });
});
