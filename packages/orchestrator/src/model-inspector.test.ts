import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addMulModel, affineModel, notOnnxBytes, writeModel } from '@conclave/testing';
import { inspectModel } from './model-inspector.js';

describe('inspectModel', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-inspector-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the declared signature: fixed dims as they are, symbolic ones as -1 with their name', async () => {
    const path = await writeModel(dir, 'affine', affineModel({ features: 4, outputs: 3 }));
    expect(await inspectModel(path)).toEqual({
      inputs: [{ name: 'x', dtype: 'float32', dims: [-1, 4], dimNames: ['batch', ''] }],
      outputs: [{ name: 'y', dtype: 'float32', dims: [-1, 3], dimNames: ['batch', ''] }],
    });
  });

  it("lists every input and output in the model's order", async () => {
    const model = addMulModel();
    const signature = await inspectModel(await writeModel(dir, 'add-mul', model));
    expect(signature).toEqual({ inputs: model.inputs, outputs: model.outputs });
  });

  it("rejects with the runtime's message when the file is no ONNX model", async () => {
    const path = await writeModel(dir, 'garbage', notOnnxBytes());
    await expect(inspectModel(path)).rejects.toThrow(`Load model from ${path} failed:Protobuf parsing failed.`);
  });
});
