import { hostTensor, type HostTensor } from './host-tensor.js';
import { encodeModel, initializer, node, spec } from './onnx-graph.js';
import { float32Data, requireInput } from './model-inputs.js';
import { randomDyadic, seededRandom } from './seeded-random.js';
import type { TinyModel } from './tiny-model.js';

export interface ReluChainModelOptions {
  /** Width of every layer. @default 8 */
  width?: number;
  /** Number of MatMul + Add + Relu layers. @default 3 */
  layers?: number;
  /** @default 1 */
  seed?: number;
}

/**
 * A small MLP, h ← Relu(h·W_l + b_l) per layer, x float32 [batch, width]: more than one
 * op kind and more than one initializer per model, still exact for the defaults
 * (weights k/4 with |k| ≤ 3, biases k/8; the sums stay well inside float32's 24 bits).
 */
export function reluChainModel(options: ReluChainModelOptions = {}): TinyModel {
  const width = options.width ?? 8;
  const layers = options.layers ?? 3;
  const seed = options.seed ?? 1;
  const random = seededRandom(seed);
  const weights = Array.from({ length: layers }, () =>
    Float32Array.from({ length: width * width }, () => randomDyadic(random, 3, 2)),
  );
  const biases = Array.from({ length: layers }, () => Float32Array.from({ length: width }, () => randomDyadic(random, 8, 3)));

  const inputSpecs = [spec('x', 'float32', ['batch', width])];
  const outputSpecs = [spec('y', 'float32', ['batch', width])];
  const nodes = [];
  const initializers = [];
  let current = 'x';
  for (let l = 0; l < layers; l++) {
    const out = l === layers - 1 ? 'y' : `h${l}`;
    nodes.push(
      node('MatMul', [current, `W${l}`], [`mm${l}`]),
      node('Add', [`mm${l}`, `b${l}`], [`pre${l}`]),
      node('Relu', [`pre${l}`], [out]),
    );
    initializers.push(
      initializer(`W${l}`, hostTensor('float32', [width, width], weights[l]!)),
      initializer(`b${l}`, hostTensor('float32', [width], biases[l]!)),
    );
    current = out;
  }
  const bytes = encodeModel({ name: 'relu_chain', inputs: inputSpecs, outputs: outputSpecs, nodes, initializers });

  return {
    name: 'relu-chain',
    bytes,
    inputs: inputSpecs,
    outputs: outputSpecs,
    expected(inputs) {
      const x = float32Data(requireInput(inputs, 'x'), 'x');
      const rows = x.length / width;
      let h = x.slice();
      for (let l = 0; l < layers; l++) {
        const w = weights[l]!;
        const b = biases[l]!;
        const next = new Float32Array(h.length);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < width; c++) {
            let acc = 0;
            for (let i = 0; i < width; i++) acc += h[r * width + i]! * w[i * width + c]!;
            next[r * width + c] = Math.max(0, acc + b[c]!);
          }
        }
        h = next;
      }
      return { y: hostTensor('float32', [rows, width], h) };
    },
    sampleInputs(size = 2): Record<string, HostTensor> {
      const r = seededRandom(seed + 1000);
      return { x: hostTensor('float32', [size, width], Float32Array.from({ length: size * width }, () => randomDyadic(r, 16, 3))) };
    },
  };
}
