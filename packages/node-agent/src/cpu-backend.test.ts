// Runs onnxruntime-node in worker threads from the compiled dist/inference-worker.js:
// build first with `pnpm exec tsc -b packages/node-agent`.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, isConclaveError, nullLogger } from '@conclave/common';
import { DTYPES, tensorFromTypedArray, type WireTensor } from '@conclave/protocol';
import {
  addMulModel, affineModel, heavyModel, hostTensorBytes, identityModel, notOnnxBytes, reluChainModel,
  writeModel, writeModelWithExternalData, type HostTensor, type TinyModel,
} from '@conclave/testing';
import { CpuBackend } from './cpu-backend.js';
import type { BackendModel } from './inference-backend.js';

const toWire = (inputs: Record<string, HostTensor>): Record<string, WireTensor> =>
  Object.fromEntries(Object.entries(inputs).map(([name, t]) => [name, tensorFromTypedArray(t.dtype, t.dims, t.data)]));

function expectOutputs(got: Record<string, WireTensor>, expected: Record<string, HostTensor>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(expected).sort());
  for (const [name, want] of Object.entries(expected)) {
    const tensor = got[name]!;
    expect(tensor.dtype).toBe(want.dtype);
    expect(tensor.dims).toEqual(want.dims);
    expect(tensor.raw.equals(Buffer.from(hostTensorBytes(want)))).toBe(true);
  }
}

async function codeOf(promise: Promise<unknown>): Promise<{ code: unknown; message: string; retryable?: boolean }> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  if (!isConclaveError(err)) return { code: err, message: String(err) };
  return { code: err.code, message: err.message, retryable: err.entry.retryable ?? false };
}

/** The inference worker's session options, with the pool's default of one intra-op thread. */
const MAIN_THREAD_SESSION_OPTIONS = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
} as const;
/** About the most a loaded, shared machine delays a timer when nothing blocks the loop. */
const LAG_FLOOR_MS = 10;
/** One run of the control is grown to at least this: four times the floor. */
const RUN_TARGET_MS = 4 * LAG_FLOOR_MS;
/** 256 times the default depth: bounds the growth on a machine faster than any we know. */
const MAX_LAYERS = 4_096;
/** Each watch covers at least this much back-to-back inference and MIN_RUNS runs, however fast a run is. */
const WATCH_MS = 300;
const MIN_RUNS = 3;
/** The watch's interval; a tick later than this was held up by a blocked loop. */
const TICK_MS = 2;

async function runOnThisThread(session: ort.InferenceSession, inputs: Record<string, HostTensor>): Promise<void> {
  const feeds = Object.fromEntries(
    Object.entries(inputs).map(([name, t]) => [name, new ort.Tensor(t.dtype, t.data as ort.Tensor.DataType, [...t.dims])]),
  );
  await session.run(feeds);
}

async function timedMs(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

/** The fastest of three runs, the first of which may still allocate: noise only ever adds time. */
async function fastestMs(work: () => Promise<unknown>): Promise<number> {
  let fastest = Infinity;
  for (let i = 0; i < 3; i++) fastest = Math.min(fastest, await timedMs(work));
  return fastest;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * Calls `once` back to back for WATCH_MS and MIN_RUNS runs while an interval watches the
 * main event loop; returns each run's ms and the longest the loop was held up.
 */
async function lagWhileRunning(once: () => Promise<number>): Promise<{ runMs: number[]; maxLagMs: number }> {
  const runMs: number[] = [];
  let maxLagMs = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - last - TICK_MS);
    last = now;
  }, TICK_MS);
  const started = performance.now();
  try {
    while (runMs.length < MIN_RUNS || performance.now() - started < WATCH_MS) runMs.push(await once());
  } finally {
    clearInterval(ticker);
  }
  // A stall that ends with the last run has had no tick after it yet.
  return { runMs, maxLagMs: Math.max(maxLagMs, performance.now() - last - TICK_MS) };
}

describe('CpuBackend', () => {
  let dir: string;
  let backend: CpuBackend;
  const written = new Map<string, BackendModel>();

  /** Writes the model under its digest and describes it as the agent would. */
  async function stored(model: TinyModel): Promise<BackendModel> {
    const sha256 = createHash('sha256').update(model.bytes).digest('hex');
    const known = written.get(sha256);
    if (known) return known;
    const path = await writeModel(dir, sha256, model);
    const entry = { sha256, path, inputs: model.inputs, outputs: model.outputs };
    written.set(sha256, entry);
    return entry;
  }

  async function loaded(model: TinyModel): Promise<BackendModel> {
    const entry = await stored(model);
    await backend.load(entry);
    return entry;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-cpu-'));
    backend = await CpuBackend.create({ workers: 2, logger: nullLogger });
  });
  afterAll(async () => {
    await backend.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a model in a worker and returns outputs equal to the reference', async () => {
    const model = affineModel({ features: 6, outputs: 4, seed: 2 });
    const { sha256 } = await loaded(model);
    expect(backend.loadedModels()).toContain(sha256);
    const inputs = model.sampleInputs(5);
    const result = await backend.run(sha256, toWire(inputs));
    expectOutputs(result.outputs, model.expected(inputs));
    expect(result.runMs).toBeGreaterThan(0);
  });

  it('returns every output of a multi-output model', async () => {
    const model = addMulModel();
    const { sha256 } = await loaded(model);
    const inputs = model.sampleInputs(9);
    expectOutputs((await backend.run(sha256, toWire(inputs))).outputs, model.expected(inputs));
  });

  it('carries every dtype across the thread boundary unchanged', async () => {
    for (const dtype of DTYPES) {
      const model = identityModel(dtype, [2, 'n']);
      const { sha256 } = await loaded(model);
      const inputs = model.sampleInputs(3);
      expectOutputs((await backend.run(sha256, toWire(inputs))).outputs, model.expected(inputs));
    }
  });

  it('refuses inputs that do not match the signature before running, and then serves the next job', async () => {
    const model = affineModel();
    const { sha256 } = await loaded(model);
    const good = model.sampleInputs(2);
    const x = good['x']!;
    const cases: Array<[string, Record<string, WireTensor>]> = [
      ['wrong name', { input: tensorFromTypedArray('float32', x.dims, x.data) }],
      ['wrong dtype', { x: tensorFromTypedArray('float64', x.dims, Float64Array.from(x.data as Float32Array)) }],
      ['wrong shape', { x: tensorFromTypedArray('float32', [4, 2], x.data) }],
      ['short bytes', { x: { dtype: 'float32', dims: [2, 4], raw: Buffer.alloc(12) } }],
    ];
    for (const [label, inputs] of cases) {
      const failure = await codeOf(backend.run(sha256, inputs));
      expect(failure.code, label).toBe('NODE-REQ-201');
      expect(failure.retryable, label).toBe(false);
      expect(failure.message, label).toContain('x: float32[batch, 4]');
    }
    expectOutputs((await backend.run(sha256, toWire(good))).outputs, model.expected(good));
  });

  it('refuses a model that is not loaded', async () => {
    const failure = await codeOf(backend.run('f'.repeat(64), {}));
    expect(failure.code).toBe('NODE-LOAD-102');
  });

  it("reports a model onnxruntime cannot load with onnxruntime's reason", async () => {
    const path = await writeModel(dir, 'garbage', notOnnxBytes());
    const failure = await codeOf(backend.load({ sha256: 'a'.repeat(64), path, inputs: [], outputs: [] }));
    expect(failure.code).toBe('NODE-LOAD-101');
    expect(failure.message).toMatch(/protobuf parsing failed/i);
    expect(backend.loadedModels()).not.toContain('a'.repeat(64));
  });

  it('refuses a declared signature that names other tensors than the file', async () => {
    const entry = await stored(reluChainModel({ seed: 11 }));
    const wrong = { ...entry, inputs: [{ name: 'image', dtype: 'float32', dims: [1, 8], dimNames: [] }] };
    const failure = await codeOf(backend.load(wrong));
    expect(failure.code).toBe('NODE-LOAD-110');
    expect(failure.message).toContain('image');
  });

  it('loads a model with external data by path', async () => {
    const model = reluChainModel({ seed: 21 });
    const { modelPath } = await writeModelWithExternalData(join(dir, 'ext'), 'relu', model);
    const sha256 = 'e'.repeat(64);
    await backend.load({ sha256, path: modelPath, inputs: model.inputs, outputs: model.outputs });
    const inputs = model.sampleInputs(4);
    // Twice, so that both workers open the session lazily from the same path.
    const [a, b] = await Promise.all([backend.run(sha256, toWire(inputs)), backend.run(sha256, toWire(inputs))]);
    expectOutputs(a.outputs, model.expected(inputs));
    expectOutputs(b.outputs, model.expected(inputs));
  });

  it('runs concurrent jobs on all workers and queues the rest', async () => {
    const model = heavyModel({ batch: 32 });
    const { sha256 } = await loaded(model);
    const inputs = model.sampleInputs();
    const runs = Array.from({ length: 5 }, () => backend.run(sha256, toWire(inputs)));
    expect(backend.stats()).toEqual({ workers: 2, busy: 2, queued: 3 });
    const expected = model.expected(inputs);
    for (const result of await Promise.all(runs)) expectOutputs(result.outputs, expected);
    expect(backend.stats()).toEqual({ workers: 2, busy: 0, queued: 0 });
  });

  it('keeps the main event loop free while a heavy model runs', async () => {
    // The control: the same model run by onnxruntime on this thread, as the backend must not.
    // Deepened until one run stalls this thread far beyond timer noise, however fast the
    // machine, so that a run on the main thread cannot hide under LAG_FLOOR_MS. Grown in
    // layers, not in batch: the input, which the main thread copies for each job, stays small.
    let layers = 16;
    let model = heavyModel({ layers });
    let session = await ort.InferenceSession.create(model.bytes, MAIN_THREAD_SESSION_OPTIONS);
    try {
      const inputs = model.sampleInputs();
      while ((await fastestMs(() => runOnThisThread(session, inputs))) < RUN_TARGET_MS && layers < MAX_LAYERS) {
        await session.release();
        layers *= 2;
        model = heavyModel({ layers });
        session = await ort.InferenceSession.create(model.bytes, MAIN_THREAD_SESSION_OPTIONS);
      }
      const { sha256 } = await loaded(model);
      const wire = toWire(inputs);
      await backend.run(sha256, wire);

      const control = await lagWhileRunning(() => timedMs(() => runOnThisThread(session, inputs)));
      const pool = await lagWhileRunning(() => timedMs(() => backend.run(sha256, wire)));
      const runMs = median(control.runMs);
      // The floors below take the control's fastest run, not its median: on a shared machine the
      // control's runs spread widely (CI saw 25 to 80 ms), and the fastest is the one closest to
      // the work itself, which the pool cannot beat by much.
      const fastestRunMs = Math.min(...control.runMs);
      const figures = JSON.stringify({ layers, runMs, fastestRunMs, control, pool });
      // The watch sees a blocked loop: on this thread each run stalls it for at least its length.
      expect(control.maxLagMs, figures).toBeGreaterThanOrEqual(0.8 * fastestRunMs);
      // The pool ran work of the same size while the loop was watched.
      expect(median(pool.runMs), figures).toBeGreaterThanOrEqual(0.5 * fastestRunMs);
      // And meanwhile the loop never stalled as a run on it would (the control: at least 0.8 of a
      // run). Not half a run: on 2 busy cores the two workers and the loop share them, and CI saw
      // a 33 ms lag beside 64 ms runs with the loop plainly free.
      expect(pool.maxLagMs, figures).toBeLessThan(Math.max(LAG_FLOOR_MS, 0.7 * runMs));
    } finally {
      await session.release();
    }
  });

  it('fails a job past its deadline at once and serves the next job', async () => {
    const model = heavyModel({ batch: 256 });
    const { sha256 } = await loaded(model);
    const wire = toWire(model.sampleInputs());
    const failure = await codeOf(backend.run(sha256, wire, { timeoutMs: 2 }));
    expect(failure.code).toBe('NODE-JOB-812');
    expect(failure.retryable).toBe(true);
    const small = affineModel();
    const entry = await loaded(small);
    const inputs = small.sampleInputs(1);
    expectOutputs((await backend.run(entry.sha256, toWire(inputs))).outputs, small.expected(inputs));
  });

  it('cancels a job when its signal aborts', async () => {
    const model = heavyModel({ batch: 256 });
    const { sha256 } = await loaded(model);
    const wire = toWire(model.sampleInputs());
    const controller = new AbortController();
    const running = backend.run(sha256, wire, { signal: controller.signal });
    setTimeout(() => controller.abort(), 1);
    expect((await codeOf(running)).code).toBe('NODE-JOB-801');
    const already = await codeOf(backend.run(sha256, wire, { signal: AbortSignal.abort() }));
    expect(already.code).toBe('NODE-JOB-801');
  });

  it('unloads a model', async () => {
    const model = identityModel('int32', [2]);
    const { sha256 } = await loaded(model);
    await backend.unload(sha256);
    expect(backend.loadedModels()).not.toContain(sha256);
    expect((await codeOf(backend.run(sha256, toWire(model.sampleInputs())))).code).toBe('NODE-LOAD-102');
  });
});

describe('CpuBackend failures', () => {
  let dir: string;
  let backend: CpuBackend | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-cpu-crash-'));
  });
  afterEach(async () => {
    await backend?.dispose();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fails the in-flight job of a crashed worker with a retryable code and respawns it', async () => {
    const log = captureLogger('NODE');
    backend = await CpuBackend.create({ workers: 1, logger: log.logger });
    const model = heavyModel({ batch: 256 });
    const path = await writeModel(dir, 'heavy', model);
    const entry = { sha256: 'b'.repeat(64), path, inputs: model.inputs, outputs: model.outputs };
    await backend.load(entry);
    const inputs = model.sampleInputs();
    backend.simulateWorkerCrash();
    const failure = await codeOf(backend.run(entry.sha256, toWire(inputs)));
    expect(failure.code).toBe('NODE-JOB-811');
    expect(failure.retryable).toBe(true);
    expect(log.lines.some((line) => line.includes('NODE-JOB-811'))).toBe(true);
    // The replacement worker opens the session again by path.
    expectOutputs((await backend.run(entry.sha256, toWire(inputs))).outputs, model.expected(inputs));
  });

  it('fails queued jobs when disposed and refuses new ones', async () => {
    backend = await CpuBackend.create({ workers: 1, logger: nullLogger });
    const model = heavyModel({ batch: 256 });
    const path = await writeModel(dir, 'heavy-dispose', model);
    const entry = { sha256: 'c'.repeat(64), path, inputs: model.inputs, outputs: model.outputs };
    await backend.load(entry);
    const wire = toWire(model.sampleInputs());
    // One running, one queued; both fail with the shutdown code, the running one at once.
    const runs = [codeOf(backend.run(entry.sha256, wire)), codeOf(backend.run(entry.sha256, wire))];
    await backend.dispose();
    for (const run of runs) expect((await run).code).toBe('NODE-STATE-711');
    expect((await codeOf(backend.run(entry.sha256, wire))).code).toBe('NODE-STATE-711');
    expect(backend.state).toBe('disposed');
  });
});
