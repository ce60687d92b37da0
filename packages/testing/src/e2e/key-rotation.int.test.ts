// Orchestrator key rotation end to end: `orchestrator key rotate` (the built CLI, as a child process)
// between two runs of an in-process orchestrator on the same data dir and port, and real node agents
// (inference from dist: `pnpm exec tsc -b packages/testing` first).
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, isConclaveError } from '@conclave/common';
import type { CapturedLogger, RedisServerHandle } from '@conclave/common';
import { createRotationStatement, generateIdentity, identityToPem, rotationStatementToText } from '@conclave/protocol';
import { ORCHESTRATOR_MAIN, startOrchestrator } from '@conclave/orchestrator';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import { spawnNode } from '../child-process.js';
import { createTestControl } from '../control.js';
import type { TestControl } from '../control.js';
import { startTestNode, tempDir } from '../fleet.js';
import { affineModel } from '../onnx/affine-model.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { affineInput, Cleanup, mismatch, wireInputs, within } from './e2e-support.js';

type TestNode = Awaited<ReturnType<typeof startTestNode>>;

const model = affineModel({ seed: 41 });

/** `orchestrator key rotate --json` on a data dir, through the built CLI. */
async function rotateKey(dataDir: string): Promise<{ old: string; new: string }> {
  const child = spawnNode(ORCHESTRATOR_MAIN, ['key', 'rotate', '--data-dir', dataDir, '--json']);
  const code = await child.exited;
  expect(code, child.lines.join('\n')).toBe(0);
  return JSON.parse(child.lines.join('\n')) as { old: string; new: string };
}

async function pinsOf(nodeDataDir: string): Promise<string[]> {
  return (JSON.parse(await readFile(join(nodeDataDir, 'join-state.json'), 'utf8')) as { pins: string[] }).pins;
}

describe('orchestrator key rotation', () => {
  const cleanup = new Cleanup();
  const perTest = new Cleanup();
  let redis: RedisServerHandle;

  beforeAll(async () => {
    redis = await startRedis();
    cleanup.add(() => redis.stop());
  });

  afterEach(() => perTest.run());
  afterAll(() => cleanup.run());

  async function ownDir(prefix: string): Promise<string> {
    const dir = await tempDir(prefix);
    perTest.add(() => dir.remove());
    return dir.path;
  }

  /** An orchestrator in this process on `dataDir`; port 0 the first time, then the same port again. */
  async function orchestratorOn(dataDir: string, log: CapturedLogger, grpcPort = 0): Promise<OrchestratorHandle & { control: TestControl }> {
    const handle = await startOrchestrator({
      redisUrl: redis.url, grpcHost: '127.0.0.1', grpcPort, httpPort: -1, dataDir, logger: log.logger, heartbeatIntervalMs: 250,
    });
    const control = createTestControl(handle);
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      control.close();
      await handle.close();
    };
    perTest.add(close);
    return { ...handle, control, close };
  }

  async function startNode(options: Parameters<typeof startTestNode>[0]): Promise<TestNode & { log: CapturedLogger }> {
    const log = captureLogger('NODE');
    const node = await startTestNode({ slots: 1, logger: log.logger, ...options });
    const closeNode = node.close.bind(node);
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      await closeNode();
    };
    perTest.add(close);
    return Object.assign(node, { log, close });
  }

  async function expectExactRun(control: TestControl, nodeId: string, n: number): Promise<void> {
    const inputs = affineInput(n);
    const job = await control.run('affine', wireInputs(inputs));
    expect(mismatch(job, model, inputs)).toBeUndefined();
    expect(job.node).toBe(nodeId);
  }

  const stateOf = async (control: TestControl, nodeId: string) => (await control.listNodes()).find((n) => n.id === nodeId)?.state;

  it('nodes pinned to the old key follow the rotation after the orchestrator restarts with the new key', async () => {
    const orchDir = await ownDir('conclave-rotate-orch-');
    const orchLog = captureLogger('ORCH');
    const first = await orchestratorOn(orchDir, orchLog);
    await first.control.addModel('affine', model.bytes);
    const oldFingerprint = first.fingerprint;

    // One node stays up across the restart; the other is stopped and restarted from its data dir.
    const keptDir = await ownDir('conclave-rotate-kept-');
    const restartedDir = await ownDir('conclave-rotate-restarted-');
    const kept = await startNode({ orchestrator: first, dataDir: keptDir });
    const restarted = await startNode({ orchestrator: first, dataDir: restartedDir });
    await waitUntil(() => kept.connected && restarted.connected, { what: 'both nodes connected' });
    await restarted.close();
    await waitUntil(async () => (await stateOf(first.control, restarted.nodeId)) !== 'connected', { what: 'restarted node gone' });
    await expectExactRun(first.control, kept.nodeId, 1);
    expect(await pinsOf(keptDir)).toEqual([oldFingerprint]);
    expect(await pinsOf(restartedDir)).toEqual([oldFingerprint]);

    await first.close();
    const rotation = await rotateKey(orchDir);
    expect(rotation.old).toBe(oldFingerprint);
    expect(rotation.new).toMatch(/^SHA256:[A-Za-z0-9_-]{43}$/);
    expect(rotation.new).not.toBe(oldFingerprint);

    const mark = orchLog.lines.length;
    const second = await orchestratorOn(orchDir, orchLog, first.grpcPort);
    expect(second.grpcPort).toBe(first.grpcPort);
    expect(second.fingerprint).toBe(rotation.new);
    expect(orchLog.lines.slice(mark).filter((l) => /orchestrator ready/.test(l) && /keyRotations=1/.test(l))).toHaveLength(1);

    // The node that stayed up reconnects on its own, learns the new pin, and runs jobs.
    await waitUntil(async () => (await stateOf(second.control, kept.nodeId)) === 'connected', {
      what: 'kept node back on the rotated orchestrator', timeoutMs: 40_000, intervalMs: 100,
    });
    await waitUntil(async () => (await pinsOf(keptDir)).includes(rotation.new), { what: 'new pin saved by the kept node' });
    expect(await pinsOf(keptDir)).toEqual([oldFingerprint, rotation.new]);
    await expectExactRun(second.control, kept.nodeId, 2);
    await kept.close();
    await waitUntil(async () => (await stateOf(second.control, kept.nodeId)) !== 'connected', { what: 'kept node gone' });

    // The node restarted from its data dir (no join string) does the same.
    const again = await startNode({ orchestrator: second.address, dataDir: restartedDir });
    expect(again.nodeId).toBe(restarted.nodeId);
    await waitUntil(() => again.connected, { what: 'restarted node connected', timeoutMs: 20_000 });
    expect(await pinsOf(restartedDir)).toEqual([oldFingerprint, rotation.new]);
    await expectExactRun(second.control, again.nodeId, 3);
    expect(again.log.lines.filter((l) => /NODE-AUTH-5\d\d/.test(l))).toEqual([]);
    expect(orchLog.lines.slice(mark).filter((l) => /ORCH-AUTH-5\d\d/.test(l))).toEqual([]);
  });

  it('without the rotation file a node pinned to the old key refuses the new key: NODE-AUTH-501', async () => {
    const orchDir = await ownDir('conclave-rotate-orch-');
    const orchLog = captureLogger('ORCH');
    const first = await orchestratorOn(orchDir, orchLog);
    const nodeDir = await ownDir('conclave-rotate-node-');
    const node = await startNode({ orchestrator: first, dataDir: nodeDir });
    await waitUntil(() => node.connected, { what: 'node connected' });
    await node.close();
    await first.close();

    const rotation = await rotateKey(orchDir);
    await rm(join(orchDir, 'key-rotations'));
    const second = await orchestratorOn(orchDir, orchLog, first.grpcPort);
    expect(second.fingerprint).toBe(rotation.new);
    expect(orchLog.lines.filter((l) => /orchestrator ready/.test(l) && /keyRotations=0/.test(l))).toHaveLength(2);

    const again = await startNode({ orchestrator: second.address, dataDir: nodeDir });
    const fatal = await within(again.fatal, 10_000, 'fatal');
    expect(fatal.code).toBe('NODE-AUTH-501');
    expect(fatal.data).toMatchObject({ failure: 'pin-mismatch' });
    expect(again.connected).toBe(false);
    expect(await pinsOf(nodeDir)).toEqual([rotation.old]);
  });

  it('a rotation file with a statement that does not verify stops the start: ORCH-AUTH-560', async () => {
    const orchDir = await ownDir('conclave-rotate-orch-');
    const current = generateIdentity();
    await writeFile(join(orchDir, 'orchestrator.key'), identityToPem(current), { mode: 0o600 });
    const statement = createRotationStatement(generateIdentity(), current.publicKey, Date.now());
    const forged = { ...statement, signature: Uint8Array.from(statement.signature, (b, i) => (i === 0 ? b ^ 1 : b)) };
    await writeFile(join(orchDir, 'key-rotations'), `${rotationStatementToText(forged)}\n`, { mode: 0o600 });

    const err: unknown = await startOrchestrator({
      redisUrl: redis.url, grpcHost: '127.0.0.1', grpcPort: 0, httpPort: -1, dataDir: orchDir, logger: captureLogger('ORCH').logger,
    }).then((handle) => handle.close().then(() => undefined), (e: unknown) => e);
    expect(isConclaveError(err) && err.code).toBe('ORCH-AUTH-560');
    expect(String((err as Error).message)).toMatch(/line 1: signature does not verify/);
  });
});
