import { cpSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, isConclaveError, type CapturedLogger } from '@conclave/common';
import { DEMO_MODEL_DIR, DEMO_MODEL_ID } from './demo-model.js';
import { FixedMemoryProbe } from './memory-probe.js';
import { configToOptions, loadModelServerConfig } from './model-server-config.js';
import { startModelServer, type ModelServerHandle } from './model-server.js';

// Real onnxruntime in the real worker (dist/engine-worker.js: run `pnpm exec tsc -b packages/model-server`
// first), real HTTP on port 0, and a --models-dir built in a temp folder from the demo model.

interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}
interface ModelList {
  data: Array<{ id: string; owned_by: string; conclave: { state: string; error?: { code: string; message: string } } }>;
}

function complete(server: ModelServerHandle, model: string, prompt = 'hi', maxTokens = 4): Promise<Response> {
  return fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens }),
  });
}

/** The value of `name{model="<dir>"}` (0 when the series does not exist yet). */
async function modelMetric(server: ModelServerHandle, name: string, dir: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{model="${realpathSync(dir)}"}`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

async function models(server: ModelServerHandle): Promise<ModelList['data']> {
  return ((await (await fetch(`${server.url}/v1/models`)).json()) as ModelList).data;
}

/** A copy of the demo model at root/name, then `change` applied to it. */
function demoCopy(root: string, name: string, change: (dir: string) => void = () => {}): string {
  const dir = join(root, name);
  cpSync(DEMO_MODEL_DIR, dir, { recursive: true });
  change(dir);
  return dir;
}

describe('models dir: several models, each loaded once on first use, broken ones answered with a 4xx', () => {
  const root = mkdtempSync(join(tmpdir(), 'models-dir-'));
  const modelsDir = join(root, 'models');
  let server: ModelServerHandle;
  let logs: CapturedLogger;
  const dirs: Record<string, string> = {};

  beforeAll(async () => {
    mkdirSync(modelsDir);
    dirs['tiny'] = demoCopy(modelsDir, 'tiny');
    dirs['tiny-cold'] = demoCopy(modelsDir, 'tiny-cold');
    dirs['no-tokenizer'] = demoCopy(modelsDir, 'no-tokenizer', (d) => rmSync(join(d, 'tokenizer.json')));
    dirs['no-onnx'] = demoCopy(modelsDir, 'no-onnx', (d) => rmSync(join(d, 'onnx'), { recursive: true }));
    // Starts like a ModelProto (passes the header check), then is garbage: onnxruntime has to refuse it.
    dirs['garbage'] = demoCopy(modelsDir, 'garbage', (d) =>
      writeFileSync(join(d, 'onnx', 'model.onnx'), Buffer.from([0x08, 0x07, 0x12, 0xff, 0xff, 0x01, 0x02, 0x99, 0x42])),
    );
    dirs['not-onnx'] = demoCopy(modelsDir, 'not-onnx', (d) => writeFileSync(join(d, 'onnx', 'model.onnx'), 'version https://git-lfs.github.com/spec/v1\n'));
    mkdirSync(join(modelsDir, '.cache'));
    writeFileSync(join(modelsDir, 'README.md'), 'not a model\n');
    logs = captureLogger('MODEL');
    server = await startModelServer({ port: 0, modelsDir, logger: logs.logger, concurrency: 2, queueLimit: 100 });
    await server.ready;
  });
  afterAll(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  const loadsOf = (name: string): number =>
    logs.lines.filter((l) => l.includes('to=loading') && l.includes(`modelDir=${realpathSync(dirs[name] as string)}`)).length;

  it('lists the default model and every subdirectory, none of them loaded yet', async () => {
    const list = await models(server);
    expect(list.map((m) => [m.id, m.conclave.state])).toEqual([
      [DEMO_MODEL_ID, 'ready'],
      ['garbage', 'unloaded'],
      ['no-onnx', 'unloaded'],
      ['no-tokenizer', 'unloaded'],
      ['not-onnx', 'unloaded'],
      ['tiny', 'unloaded'],
      ['tiny-cold', 'unloaded'],
    ]);
    expect(list[0]?.owned_by).toBe('conclave (demo model)');
    expect(await modelMetric(server, 'model_sessions_created_total', dirs['tiny'] as string)).toBe(0);
  });

  it('loads a model on its first request, and a burst of 20 more shares its one session', async () => {
    const first = await complete(server, 'tiny', 'hi', 6);
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ model: 'tiny', choices: [{ text: 'this is the conclave demo model' }] });
    const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => complete(server, 'tiny', `hello ${i}`)));
    expect(burst.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(await modelMetric(server, 'model_sessions_created_total', dirs['tiny'] as string)).toBe(1);
    expect(await modelMetric(server, 'model_sessions_loaded', dirs['tiny'] as string)).toBe(1);
    expect(loadsOf('tiny')).toBe(1);
  });

  it('makes 20 cold requests wait for one load, while the default model keeps answering', async () => {
    const [cold, others] = await Promise.all([
      Promise.all(Array.from({ length: 20 }, (_, i) => complete(server, 'tiny-cold', `hello ${i}`))),
      Promise.all(Array.from({ length: 5 }, () => complete(server, DEMO_MODEL_ID))),
    ]);
    expect(cold.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(others.map((r) => r.status)).toEqual(Array(5).fill(200));
    expect(await modelMetric(server, 'model_sessions_created_total', dirs['tiny-cold'] as string)).toBe(1);
    expect(await modelMetric(server, 'model_sessions_loaded', dirs['tiny-cold'] as string)).toBe(1);
    expect(loadsOf('tiny-cold')).toBe(1);
  });

  it('answers an incomplete directory with 400 MODEL-LOAD-108 naming the missing file, every time, without reloading', async () => {
    for (const [name, file] of [['no-tokenizer', 'tokenizer.json'], ['no-onnx', 'model.onnx']] as const) {
      const answers: ErrorBody[] = [];
      for (let i = 0; i < 2; i++) {
        const response = await complete(server, name);
        expect(response.status).toBe(400);
        answers.push((await response.json()) as ErrorBody);
      }
      expect(answers[0]?.error).toMatchObject({ code: 'MODEL-LOAD-108', type: 'invalid_request_error' });
      expect(answers[0]?.error.message).toContain(file);
      expect(answers[1]).toEqual(answers[0]);
      expect(logs.lines.filter((l) => l.includes('loading model on first use') && l.includes(`model=${name}`))).toHaveLength(0);
    }
  });

  it("answers a model.onnx onnxruntime cannot parse with 400 MODEL-LOAD-103 and onnxruntime's message, once loaded", async () => {
    const answers: ErrorBody[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await complete(server, 'garbage');
      expect(response.status).toBe(400);
      answers.push((await response.json()) as ErrorBody);
    }
    expect(answers[0]?.error.code).toBe('MODEL-LOAD-103');
    expect(answers[0]?.error.message).toMatch(/onnxruntime could not load .*model\.onnx: .+/);
    expect(answers[2]).toEqual(answers[0]);
    expect(loadsOf('garbage')).toBe(1);
    expect(await modelMetric(server, 'model_sessions_created_total', dirs['garbage'] as string)).toBe(0);
    expect(await modelMetric(server, 'model_sessions_loaded', dirs['garbage'] as string)).toBe(0);

    const notOnnx = await complete(server, 'not-onnx');
    expect(notOnnx.status).toBe(400);
    expect(((await notOnnx.json()) as ErrorBody).error).toMatchObject({ code: 'MODEL-LOAD-103', message: expect.stringContaining('is not an ONNX model') });
  });

  it('keeps serving the default model and reports each model state in /v1/models', async () => {
    const response = await complete(server, DEMO_MODEL_ID, 'hi', 6);
    expect(response.status).toBe(200);
    expect(((await response.json()) as { choices: Array<{ text: string }> }).choices[0]?.text).toBe('this is the conclave demo model');
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    const byId = new Map((await models(server)).map((m) => [m.id, m.conclave]));
    expect(byId.get('tiny')).toEqual({ state: 'ready', modelType: 'conclave-demo', contextLengthSource: 'config.json max_position_embeddings' });
    expect(byId.get('no-tokenizer')).toMatchObject({ state: 'failed', error: { code: 'MODEL-LOAD-108' } });
    expect(byId.get('garbage')).toMatchObject({ state: 'failed', error: { code: 'MODEL-LOAD-103' } });
    const one = await fetch(`${server.url}/v1/models/garbage`);
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({ id: 'garbage', conclave: { state: 'failed' } });
  });

  it('answers an unknown id with 404 MODEL-REQ-205 listing the ids served', async () => {
    for (const response of [await complete(server, 'gpt-17'), await fetch(`${server.url}/v1/models/gpt-17`)]) {
      expect(response.status).toBe(404);
      const { error } = (await response.json()) as ErrorBody;
      expect(error.code).toBe('MODEL-REQ-205');
      expect(error.message).toContain('gpt-17');
      for (const id of [DEMO_MODEL_ID, 'tiny', 'no-tokenizer', 'garbage']) expect(error.message).toContain(id);
      expect(error.message).not.toContain('.cache');
    }
  });

  it('loads a fixed directory on the next request, and serves a directory added after start', async () => {
    cpSync(join(DEMO_MODEL_DIR, 'tokenizer.json'), join(dirs['no-tokenizer'] as string, 'tokenizer.json'));
    const fixed = await complete(server, 'no-tokenizer');
    expect(fixed.status).toBe(200);
    dirs['late'] = demoCopy(modelsDir, 'late');
    const late = await complete(server, 'late');
    expect(late.status).toBe(200);
    expect(await modelMetric(server, 'model_sessions_created_total', dirs['late'])).toBe(1);
  });
});

describe('models dir: configuration and memory', () => {
  it('reads modelsDir from CONCLAVE_MODEL_MODELS_DIR, and refuses a models dir that is not a directory', async () => {
    const config = loadModelServerConfig({ flags: {}, env: { CONCLAVE_MODEL_MODELS_DIR: '/srv/models' } });
    expect(configToOptions(config).modelsDir).toBe('/srv/models');
    const err = await startModelServer({ port: 0, modelsDir: '/nonexistent/models', logger: captureLogger('MODEL').logger }).catch((e: unknown) => e);
    expect(isConclaveError(err) && err.code).toBe('MODEL-STATE-703');
  });

  it('refuses a lazy load that does not fit with 429 MODEL-LOAD-104, and loads it once memory is free', async () => {
    const root = mkdtempSync(join(tmpdir(), 'models-dir-mem-'));
    const dir = demoCopy(root, 'tiny');
    const MiB = 2 ** 20;
    // The demo needs about 0.75 MiB to load (440 kB × 1.7); the memory guard itself never trips (soft = hard = 1).
    const probe = new FixedMemoryProbe({ limitBytes: 64 * MiB, usedBytes: 8 * MiB });
    const server = await startModelServer({
      port: 0,
      modelsDir: root,
      logger: captureLogger('MODEL').logger,
      memory: { probe, marginBytes: 0, softThreshold: 1, hardThreshold: 1 },
    });
    try {
      await server.ready;
      probe.set({ usedBytes: 64 * MiB - 100_000 });
      const refused = await complete(server, 'tiny');
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('2');
      expect(((await refused.json()) as ErrorBody).error.code).toBe('MODEL-LOAD-104');
      probe.set({ usedBytes: 8 * MiB });
      expect((await complete(server, 'tiny')).status).toBe(200);
      expect(await modelMetric(server, 'model_sessions_created_total', dir)).toBe(1);
    } finally {
      await server.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
