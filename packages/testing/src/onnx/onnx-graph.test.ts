import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { affineModel } from './affine-model.js';
import { heavyModel } from './heavy-model.js';
import { hostTensor } from './host-tensor.js';
import { IR_VERSION, OPSET_VERSION, onnx } from './onnx-graph.js';
import { writeModelWithExternalData } from './write-model.js';

// Running these models in onnxruntime is tested in packages/node-agent/src/tiny-models.test.ts,
// where onnxruntime-node is a dependency; here only the encoded structure is checked.
describe('ONNX model encoding', () => {
  it('writes IR version 8, the default-domain opset and a symbolic batch dimension', () => {
    const model = onnx.ModelProto.decode(affineModel().bytes);
    expect(Number(model.irVersion)).toBe(IR_VERSION);
    expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', OPSET_VERSION]]);
    const dims = model.graph?.input?.[0]?.type?.tensorType?.shape?.dim ?? [];
    expect(dims.map((d) => d.dimParam || Number(d.dimValue))).toEqual(['batch', 4]);
    expect(affineModel().inputs).toEqual([{ name: 'x', dtype: 'float32', dims: [-1, 4], dimNames: ['batch', ''] }]);
  });

  it('computes the affine reference in float32', () => {
    const model = affineModel({ features: 2, outputs: 1, seed: 4 });
    const x = hostTensor('float32', [1, 2], new Float32Array([1, 2]));
    const want = model.weights[0]! + 2 * model.weights[1]! + model.bias[0]!;
    expect(Array.from(model.expected({ x })['y']!.data as Float32Array)).toEqual([want]);
  });

  it('heavyModel keeps sample values exactly (a signed permutation per layer)', () => {
    const model = heavyModel({ size: 8, layers: 3, batch: 2 });
    const inputs = model.sampleInputs();
    const y = model.expected(inputs)['y']!.data as Float32Array;
    const x = inputs['x']!.data as Float32Array;
    const magnitudes = (a: Float32Array) => Array.from(a.subarray(0, 8), Math.abs).sort();
    expect(magnitudes(y)).toEqual(magnitudes(x));
  });

  it('moves initializers to a side file with location, offset and length', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'conclave-onnx-'));
    try {
      const { modelPath, dataPath } = await writeModelWithExternalData(dir, 'affine', affineModel());
      const model = onnx.ModelProto.decode(await readFile(modelPath));
      const data = await readFile(dataPath);
      for (const init of model.graph?.initializer ?? []) {
        expect(init.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
        expect(init.rawData?.length ?? 0).toBe(0);
        const entries = Object.fromEntries((init.externalData ?? []).map((e) => [e.key, e.value]));
        expect(entries['location']).toBe('affine.onnx.data');
        expect(Number(entries['offset']) % 64).toBe(0);
        expect(Number(entries['offset']) + Number(entries['length'])).toBeLessThanOrEqual(data.length);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
