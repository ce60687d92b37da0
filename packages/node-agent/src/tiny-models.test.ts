// The tiny ONNX model builders of @conclave/testing, checked against real
// onnxruntime-node in-process. They live here because this package has onnxruntime as
// a dependency; @conclave/testing does not. Build first: pnpm exec tsc -b packages/node-agent
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addMulModel, affineModel, heavyModel, hostTensorBytes, identityModel, notOnnxBytes, reluChainModel,
  writeModel, writeModelWithExternalData, type HostTensor, type TinyModel,
} from '@conclave/testing';
import { DTYPES, type TensorData } from '@conclave/protocol';

const SESSION_OPTIONS = { intraOpNumThreads: 1, interOpNumThreads: 1 } as const;

async function runInProcess(session: ort.InferenceSession, inputs: Record<string, HostTensor>) {
  const feeds = Object.fromEntries(
    Object.entries(inputs).map(([name, t]) => [name, new ort.Tensor(t.dtype, t.data as ort.Tensor.DataType, [...t.dims])]),
  );
  return session.run(feeds);
}

async function expectExact(model: TinyModel, session: ort.InferenceSession, size?: number): Promise<void> {
  const inputs = model.sampleInputs(size);
  const results = await runInProcess(session, inputs);
  const expected = model.expected(inputs);
  expect(Object.keys(results).sort()).toEqual(Object.keys(expected).sort());
  for (const [name, want] of Object.entries(expected)) {
    const got = results[name]!;
    expect(got.type).toBe(want.dtype);
    expect(got.dims).toEqual(want.dims);
    const data = got.data as TensorData;
    expect(Buffer.from(data.buffer, data.byteOffset, data.byteLength).equals(Buffer.from(hostTensorBytes(want)))).toBe(true);
  }
}

describe('tiny ONNX models in onnxruntime-node', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-tiny-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, () => TinyModel, number?]> = [
    ['affine', () => affineModel({ features: 5, outputs: 3, seed: 9 }), 7],
    ['add-mul', () => addMulModel(), 6],
    ['add-mul of fixed length', () => addMulModel({ length: 3 })],
    ['relu chain', () => reluChainModel(), 4],
    ...DTYPES.map((dtype): [string, () => TinyModel, number] => [`identity ${dtype}`, () => identityModel(dtype, ['n', 2]), 3]),
  ];
  for (const [label, build, size] of cases) {
    it(`${label}: onnxruntime matches expected() bit for bit`, async () => {
      const model = build();
      const session = await ort.InferenceSession.create(model.bytes, SESSION_OPTIONS);
      expect(session.inputNames).toEqual(model.inputs.map((s) => s.name));
      expect(session.outputNames).toEqual(model.outputs.map((s) => s.name));
      await expectExact(model, session, size);
      await session.release();
    });
  }

  it('the same seed gives the same bytes; another seed other weights', () => {
    expect(Buffer.from(affineModel({ seed: 3 }).bytes).equals(Buffer.from(affineModel({ seed: 3 }).bytes))).toBe(true);
    expect(Buffer.from(affineModel({ seed: 3 }).bytes).equals(Buffer.from(affineModel({ seed: 4 }).bytes))).toBe(false);
  });

  // Its weight is its work, not a speed: a run takes however long this machine needs, and the
  // benchmarks size it to their target. What must hold anywhere is that layers add work.
  it('heavyModel is exact, and four times the layers take at least twice as long', async () => {
    const sizes = [16, 64];
    const runs = await Promise.all(
      sizes.map(async (layers) => {
        const model = heavyModel({ layers });
        const session = await ort.InferenceSession.create(model.bytes, SESSION_OPTIONS);
        await expectExact(model, session);
        return { session, inputs: model.sampleInputs(), fastestMs: Infinity };
      }),
    );
    // Alternating rounds, fastest of each: load on a shared machine hits both alike and only ever adds time.
    for (let round = 0; round < 7; round++) {
      for (const run of runs) {
        const started = performance.now();
        await runInProcess(run.session, run.inputs);
        run.fastestMs = Math.min(run.fastestMs, performance.now() - started);
      }
    }
    await Promise.all(runs.map((run) => run.session.release()));
    const [base, heavier] = runs.map((run) => run.fastestMs) as [number, number];
    expect(heavier, `16 layers: ${base.toFixed(2)} ms, 64 layers: ${heavier.toFixed(2)} ms`).toBeGreaterThanOrEqual(2 * base);
  });

  it('writeModel writes a file onnxruntime loads by path', async () => {
    const model = addMulModel();
    const path = await writeModel(dir, 'add-mul', model);
    expect(path).toBe(join(dir, 'add-mul.onnx'));
    const session = await ort.InferenceSession.create(path, SESSION_OPTIONS);
    await expectExact(model, session);
    await session.release();
  });

  it('a model with external data loads by path, not from its bytes alone', async () => {
    const model = reluChainModel({ seed: 5 });
    const { modelPath, dataPath } = await writeModelWithExternalData(dir, 'relu-ext', model);
    expect(dataPath).toBe(`${modelPath}.data`);
    const graphOnly = await readFile(modelPath);
    expect(graphOnly.length).toBeLessThan(model.bytes.length);
    const session = await ort.InferenceSession.create(modelPath, SESSION_OPTIONS);
    await expectExact(model, session, 3);
    await session.release();
    await expect(ort.InferenceSession.create(new Uint8Array(graphOnly), SESSION_OPTIONS)).rejects.toThrow();
  });

  it('notOnnxBytes is refused by onnxruntime', async () => {
    await expect(ort.InferenceSession.create(notOnnxBytes(), SESSION_OPTIONS)).rejects.toThrow(/protobuf parsing failed/);
  });
});
