import { hostTensor, type HostTensor } from './host-tensor.js';
import { encodeModel, node, spec } from './onnx-graph.js';
import { float32Data, requireInput } from './model-inputs.js';
import { randomDyadic, seededRandom } from './seeded-random.js';
import type { TinyModel } from './tiny-model.js';

export interface AddMulModelOptions {
  /** A fixed length for `a` and `b`; symbolic (`n`) when absent. */
  length?: number;
}

/**
 * Two inputs, two outputs: sum = a + b, product = a * b, float32 [n]. One float32
 * operation per element, which `Math.fround` reproduces exactly for any input.
 */
export function addMulModel(options: AddMulModelOptions = {}): TinyModel {
  const dim = options.length ?? 'n';
  const inputSpecs = [spec('a', 'float32', [dim]), spec('b', 'float32', [dim])];
  const outputSpecs = [spec('sum', 'float32', [dim]), spec('product', 'float32', [dim])];
  const bytes = encodeModel({
    name: 'add_mul',
    inputs: inputSpecs,
    outputs: outputSpecs,
    nodes: [node('Add', ['a', 'b'], ['sum']), node('Mul', ['a', 'b'], ['product'])],
  });
  return {
    name: 'add-mul',
    bytes,
    inputs: inputSpecs,
    outputs: outputSpecs,
    expected(inputs) {
      const a = float32Data(requireInput(inputs, 'a'), 'a');
      const b = float32Data(requireInput(inputs, 'b'), 'b');
      if (a.length !== b.length) throw new Error('expected(): a and b differ in length');
      const sum = a.map((v, i) => v + b[i]!);
      const product = a.map((v, i) => v * b[i]!);
      return { sum: hostTensor('float32', [a.length], sum), product: hostTensor('float32', [a.length], product) };
    },
    sampleInputs(size = options.length ?? 4): Record<string, HostTensor> {
      const r = seededRandom(7);
      const make = () => Float32Array.from({ length: size }, () => randomDyadic(r, 64, 3));
      return { a: hostTensor('float32', [size], make()), b: hostTensor('float32', [size], make()) };
    },
  };
}
