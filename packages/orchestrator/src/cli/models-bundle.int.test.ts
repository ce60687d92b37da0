// Needs the built packages (`pnpm build`): the orchestrator runs in process, its model inspector from dist.
// `models add` with a Hailo bundle, through the CLI's real Control calls to a real orchestrator
// and Redis: the bundle as stored and listed, the manifest file's mistakes, the server's refusal of
// a header without model.onnx (which the CLI cannot express), and a job for the bundle.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createControlClient } from '@conclave/protocol';
import { affineModel, identityModel, startRedis, startTestOrchestrator, tempDir } from '@conclave/testing';
import type { RedisServerHandle } from '@conclave/testing';
import type { JobData } from '../dispatcher.js';
import type { OrchestratorHandle } from '../orchestrator.js';
import { BULL_PREFIX, JOB_QUEUE_NAME } from '../redis-keys.js';
import { StringOut } from './cli-io.js';
import { controlCallsFromClient, type ControlCalls } from './control-calls.js';
import { runOrchestratorCli } from './orchestrator-program.js';

const model = affineModel({ seed: 5 });
const pre = identityModel('float32', ['n']);
const hef = Buffer.from('a fake HEF for hailo8');
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** model.onnx's x → pre.onnx → y → the HEF → model.onnx's y. */
const manifestJson = (extra: Record<string, unknown> = {}) => ({
  hailortVersion: '4.20.0', compilerVersion: '3.29.0', batchSize: 1, tolerance: { absolute: 0.01, relative: 0.02 },
  inputs: [{ name: 'y', vstream: 'affine/input_layer1', dtype: 'float32', layout: 'NC', qpScale: 0.5, qpZeroPoint: 3 }],
  outputs: [{ name: 'y', vstream: 'affine/fc1', dtype: 'float32', layout: 'NC' }],
  files: { hailo8: sha(hef), pre: sha(pre.bytes) },
  ...extra,
});

describe('models add with a Hailo bundle', () => {
  let redis: RedisServerHandle;
  let orchestrator: OrchestratorHandle;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let calls: ControlCalls;
  const path = (name: string) => join(dir.path, name);

  const cli = async (argv: string[]) => {
    const stdout = new StringOut();
    const stderr = new StringOut();
    const code = await runOrchestratorCli([...argv, '--address', orchestrator.address, '--token', orchestrator.operatorToken ?? ''], {
      env: {}, io: { stdout, stderr },
      connect: (address, { operatorToken }) =>
        controlCallsFromClient(createControlClient(address, operatorToken !== undefined ? { operatorToken } : {}), { address }),
      startOrchestrator: () => Promise.reject(new Error('not here')),
      shutdownSignal: () => new Promise<string>(() => undefined),
      interruptSignal: () => new Promise<string>(() => undefined),
    });
    return { code, stdout: stdout.text, stderr: stderr.text };
  };

  beforeAll(async () => {
    redis = await startRedis();
    orchestrator = await startTestOrchestrator({ redisUrl: redis.url });
    dir = await tempDir('conclave-bundle-cli-');
    await writeFile(path('model.onnx'), model.bytes);
    await writeFile(path('pre.onnx'), pre.bytes);
    await writeFile(path('det.hef'), hef);
    await writeFile(path('manifest.json'), JSON.stringify(manifestJson()));
    calls = controlCallsFromClient(
      createControlClient(orchestrator.address, orchestrator.operatorToken !== undefined ? { operatorToken: orchestrator.operatorToken } : {}),
      { address: orchestrator.address },
    );
  });
  afterAll(async () => {
    calls?.close();
    await orchestrator?.close();
    await redis?.stop();
    await dir?.remove();
  });

  it('stores the bundle, lists it with its chips and parts, and gives --json its artifacts and manifest', async () => {
    const added = await cli(['models', 'add', 'det', path('model.onnx'), '--hef', `hailo8=${path('det.hef')}`, '--pre', path('pre.onnx'),
      '--hailo-manifest', path('manifest.json')]);
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(new RegExp(`^hef hailo8: +${sha(hef)} \\(21 B\\)$`, 'm'));
    expect(added.stdout).toMatch(/^hef inputs: +y=affine\/input_layer1:float32\/NC$/m);

    const list = await cli(['models', 'list']);
    expect(list.stdout.split('\n')[0]).toMatch(/ BUNDLE /);
    expect(list.stdout).toMatch(/^det .* hef hailo8 \+ pre /m);
    const json = JSON.parse((await cli(['models', 'list', '--json'])).stdout) as Array<{ name: string; artifacts: unknown[]; hailo: unknown }>;
    const det = json.find((m) => m.name === 'det');
    expect(det?.artifacts).toEqual([
      expect.objectContaining({ role: 'hef', chip: 'hailo8', sha256: sha(hef), size: hef.byteLength }),
      expect.objectContaining({ role: 'pre', chip: '', sha256: sha(pre.bytes), outputs: [expect.objectContaining({ name: 'y' })] }),
    ]);
    expect(det?.hailo).toMatchObject({ hailortVersion: '4.20.0', toleranceAbs: 0.01, toleranceRel: 0.02, batchSize: 1 });
  });

  it('refuses a bad manifest file before sending, with its code and the field', async () => {
    await writeFile(path('bad.json'), JSON.stringify(manifestJson({ tolerance: { absolute: -1, relative: 0 } })));
    const bad = await cli(['models', 'add', 'bad', path('model.onnx'), '--hef', `hailo8=${path('det.hef')}`, '--pre', path('pre.onnx'),
      '--hailo-manifest', path('bad.json')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^ORCH-REQ-273 .*tolerance\.absolute/);
    await writeFile(path('text.json'), 'not json');
    expect((await cli(['models', 'add', 'bad', path('model.onnx'), '--hailo-manifest', path('text.json')])).stderr).toMatch(/^ORCH-REQ-273 .*not JSON/);
    // A digest for a file the command line does not give.
    const stray = await cli(['models', 'add', 'bad', path('model.onnx'), '--hef', `hailo8=${path('det.hef')}`, '--hailo-manifest', path('manifest.json')]);
    expect(stray.stderr).toMatch(/^ORCH-REQ-273 .*files\.pre/);
    expect((await cli(['models', 'add', 'bad', path('model.onnx'), '--hef', `hailo9=${path('det.hef')}`])).stderr).toMatch(/^ORCH-REQ-253 .*--hef/);
    expect((await calls.listModels()).map((m) => m.name)).not.toContain('bad');
  });

  it('has the orchestrator check the digests the manifest gives (ORCH-LOAD-112)', async () => {
    await writeFile(path('wrong.json'), JSON.stringify(manifestJson({ files: { hailo8: sha(pre.bytes), pre: sha(pre.bytes) } })));
    const wrong = await cli(['models', 'add', 'wrong', path('model.onnx'), '--hef', `hailo8=${path('det.hef')}`, '--pre', path('pre.onnx'),
      '--hailo-manifest', path('wrong.json')]);
    expect(wrong.stderr).toMatch(/^ORCH-LOAD-112 /);
  });

  it('refuses a header with bundle files and no model.onnx (ORCH-REQ-270), which the CLI cannot send', async () => {
    async function* bytes(): AsyncGenerator<Uint8Array> {
      yield hef;
    }
    await expect(calls.addModel({ name: 'headless', size: 0, files: [{ role: 'hef', chip: 'hailo8', size: hef.byteLength }] }, bytes()))
      .rejects.toMatchObject({ code: 'ORCH-REQ-270' });
    expect((await calls.listModels()).map((m) => m.name)).not.toContain('headless');
  });

  it('queues a job for the bundle with its artifacts and chips, and says why a required hailo waits', async () => {
    const x = model.sampleInputs(1).x!;
    const input = JSON.stringify({ x: { dtype: 'float32', dims: x.dims, data: Array.from(x.data as Float32Array) } });
    const submitted = await cli(['jobs', 'submit', '--model', 'det', '--input', input, '--accelerator', 'hailo', '--json']);
    expect(submitted.stderr).toBe('');
    const id = (JSON.parse(submitted.stdout) as { id: string }).id;
    const shown = await cli(['jobs', 'get', id]);
    expect(shown.stdout).toMatch(/^requires: +accelerator hailo$/m);
    expect(shown.stdout).toMatch(/^waiting: +no node offers accelerator "hailo"$/m);
    const preferred = await cli(['jobs', 'submit', '--model', 'det', '--input', input, '--prefer-accelerator', 'hailo', '--json']);
    const preferredId = (JSON.parse(preferred.stdout) as { id: string }).id;
    expect((await cli(['jobs', 'get', preferredId])).stdout).toMatch(/^prefers: +accelerator hailo$/m);

    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue<JobData>(JOB_QUEUE_NAME, { connection, prefix: BULL_PREFIX });
    try {
      const data = (await queue.getJob(id))?.data;
      expect(data?.needs).toMatchObject({ accelerator: 'hailo', hefChips: ['hailo8'] });
      expect(data?.model?.artifacts?.map((a) => a.role)).toEqual(['hef', 'pre']);
      expect(data?.model?.hailo).toMatchObject({ compilerVersion: '3.29.0' });
      expect((await queue.getJob(preferredId))?.data.needs).toMatchObject({ preferAccelerator: 'hailo' });
    } finally {
      await calls.cancelJob(id);
      await calls.cancelJob(preferredId);
      await queue.close();
      await connection.quit();
    }
  });
});
