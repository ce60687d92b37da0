import { hostTensor, type HostTensor } from './host-tensor.js';
import { encodeModel, initializer, node, spec } from './onnx-graph.js';
import { float32Data, requireInput } from './model-inputs.js';
import { randomDyadic, seededRandom } from './seeded-random.js';
import type { TinyModel } from './tiny-model.js';

export interface AffineModelOptions {
  /** Width of the input `x`. @default 4 */
  features?: number;
  /** Width of the output `y`. @default 3 */
  outputs?: number;
  /** Seed of the weights; the same seed gives the same model bytes. @default 1 */
  seed?: number;
}

/**
 * y = x·W + b (MatMul, then Add) with `x` float32 [batch, features] (batch symbolic).
 * Weights are multiples of 1/4 and biases of 1/8, and sample inputs multiples of 1/8, so
 * every partial sum is exact in float32 and `expected` matches onnxruntime bit for bit.
 */
export function affineModel(options: AffineModelOptions = {}): TinyModel & { weights: Float32Array; bias: Float32Array } {
  const features = options.features ?? 4;
  const outputs = options.outputs ?? 3;
  const seed = options.seed ?? 1;
  const random = seededRandom(seed);
  const weights = Float32Array.from({ length: features * outputs }, () => randomDyadic(random, 4, 2));
  const bias = Float32Array.from({ length: outputs }, () => randomDyadic(random, 8, 3));
  const inputSpecs = [spec('x', 'float32', ['batch', features])];
  const outputSpecs = [spec('y', 'float32', ['batch', outputs])];
  const bytes = encodeModel({
    name: 'affine',
    inputs: inputSpecs,
    outputs: outputSpecs,
    nodes: [node('MatMul', ['x', 'W'], ['xW']), node('Add', ['xW', 'b'], ['y'])],
    initializers: [
      initializer('W', hostTensor('float32', [features, outputs], weights)),
      initializer('b', hostTensor('float32', [outputs], bias)),
    ],
  });

  return {
    name: 'affine',
    bytes,
    inputs: inputSpecs,
    outputs: outputSpecs,
    weights,
    bias,
    expected(inputs) {
      const xT = requireInput(inputs, 'x');
      const x = float32Data(xT, 'x');
      const rows = x.length / features;
      const y = new Float32Array(rows * outputs);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < outputs; c++) {
          let acc = 0;
          for (let i = 0; i < features; i++) acc += x[r * features + i]! * weights[i * outputs + c]!;
          y[r * outputs + c] = acc + bias[c]!;
        }
      }
      return { y: hostTensor('float32', [rows, outputs], y) };
    },
    sampleInputs(size = 2): Record<string, HostTensor> {
      const r = seededRandom(seed + 1000);
      const x = Float32Array.from({ length: size * features }, () => randomDyadic(r, 16, 3));
      return { x: hostTensor('float32', [size, features], x) };
    },
  };
}
