import { hostTensor, type HostTensor } from './host-tensor.js';
import { encodeModel, initializer, node, spec } from './onnx-graph.js';
import { float32Data, requireInput } from './model-inputs.js';
import { randomDyadic, randomInt, seededRandom } from './seeded-random.js';
import type { TinyModel } from './tiny-model.js';

export interface HeavyModelOptions {
  /** Width of the square weight and of `x`. @default 512 */
  size?: number;
  /** Number of chained MatMuls. @default 16 */
  layers?: number;
  /** The batch `sampleInputs()` uses when not told. @default 128 */
  batch?: number;
  /** @default 1 */
  seed?: number;
}

/**
 * A chain of `layers` dense MatMuls of x float32 [batch, size] by one size×size weight:
 * 2·batch·size²·layers flops, so a single run takes a measurable time (the defaults are
 * ≈ 1.07 GFLOP: about 13 ms on one AVX-512 x86 core, far more on a Cortex-A76). The
 * weight is a signed permutation matrix, so the values neither grow nor vanish into
 * denormals, and `expected` is exact as long as no input element is zero (the sign of
 * a sum of zeros depends on the order the kernel adds in).
 */
export function heavyModel(options: HeavyModelOptions = {}): TinyModel {
  const size = options.size ?? 512;
  const layers = options.layers ?? 16;
  const defaultBatch = options.batch ?? 128;
  const seed = options.seed ?? 1;
  const random = seededRandom(seed);
  const perm = shuffled(size, random);
  const signs = Array.from({ length: size }, () => (randomInt(random, 0, 1) === 0 ? -1 : 1));
  const weight = new Float32Array(size * size);
  // Column c of W has its one non-zero in row perm[c]: (x·W)[r, c] = signs[c] · x[r, perm[c]].
  for (let c = 0; c < size; c++) weight[perm[c]! * size + c] = signs[c]!;

  const inputSpecs = [spec('x', 'float32', ['batch', size])];
  const outputSpecs = [spec('y', 'float32', ['batch', size])];
  const names = Array.from({ length: layers + 1 }, (_, i) => (i === 0 ? 'x' : i === layers ? 'y' : `h${i}`));
  const bytes = encodeModel({
    name: 'heavy',
    inputs: inputSpecs,
    outputs: outputSpecs,
    nodes: names.slice(1).map((out, i) => node('MatMul', [names[i]!, 'W'], [out])),
    initializers: [initializer('W', hostTensor('float32', [size, size], weight))],
  });

  return {
    name: `heavy-${size}x${layers}`,
    bytes,
    inputs: inputSpecs,
    outputs: outputSpecs,
    expected(inputs) {
      const x = float32Data(requireInput(inputs, 'x'), 'x');
      const rows = x.length / size;
      let cur = x.slice();
      for (let l = 0; l < layers; l++) {
        const next = new Float32Array(cur.length);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < size; c++) next[r * size + c] = signs[c]! * cur[r * size + perm[c]!]!;
        }
        cur = next;
      }
      return { y: hostTensor('float32', [rows, size], cur) };
    },
    sampleInputs(batch = defaultBatch): Record<string, HostTensor> {
      const r = seededRandom(seed + 1000);
      // Never zero: see the note on the sign of zero above.
      const x = Float32Array.from({ length: batch * size }, () => randomDyadic(r, 64, 4) || 0.5);
      return { x: hostTensor('float32', [batch, size], x) };
    },
  };
}

function shuffled(n: number, random: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
