import type { TensorData } from '@conclave/protocol';
import { dataConstructor, elementCount, hostTensor, type ElementType, type HostTensor } from './host-tensor.js';
import { encodeModel, node, spec } from './onnx-graph.js';
import { requireInput } from './model-inputs.js';
import { randomInt, seededRandom } from './seeded-random.js';
import type { TinyModel } from './tiny-model.js';

/**
 * y = x for one element type: dtype coverage for the tensor codec and the backends.
 * A string dimension is symbolic (`['batch', 3]`).
 */
export function identityModel(dtype: ElementType, dims: ReadonlyArray<number | string> = ['n']): TinyModel {
  const inputSpecs = [spec('x', dtype, dims)];
  const outputSpecs = [spec('y', dtype, dims)];
  const bytes = encodeModel({
    name: `identity_${dtype}`,
    inputs: inputSpecs,
    outputs: outputSpecs,
    nodes: [node('Identity', ['x'], ['y'])],
  });
  return {
    name: `identity-${dtype}`,
    bytes,
    inputs: inputSpecs,
    outputs: outputSpecs,
    expected(inputs) {
      const x = requireInput(inputs, 'x');
      return { y: hostTensor(x.dtype, x.dims, x.data.slice()) };
    },
    sampleInputs(size = 2): Record<string, HostTensor> {
      const shape = dims.map((d) => (typeof d === 'string' ? size : d));
      return { x: hostTensor(dtype, shape, sampleData(dtype, elementCount(shape))) };
    },
  };
}

/**
 * Values that exercise each type's edges: negative numbers, 64-bit integers beyond
 * 2^53 (which a float64 detour would corrupt), float16 bit patterns (NaN excluded,
 * since NaN payloads need not survive).
 */
function sampleData(dtype: ElementType, count: number): TensorData {
  const r = seededRandom(count * 31 + dtype.length);
  const data = new (dataConstructor(dtype))(count);
  for (let i = 0; i < count; i++) {
    switch (dtype) {
      case 'int64':
        (data as BigInt64Array)[i] = BigInt(randomInt(r, -1000, 1000)) * 0x2000_0000_0001n;
        break;
      case 'uint64':
        (data as BigUint64Array)[i] = BigInt(randomInt(r, 0, 1000)) * 0x4000_0000_0003n;
        break;
      case 'bool':
        data[i] = randomInt(r, 0, 1);
        break;
      case 'float16':
        // Exponent bits 0x1f are inf/NaN; keep to finite values.
        data[i] = (randomInt(r, 0, 1) << 15) | (randomInt(r, 0, 0x1e) << 10) | randomInt(r, 0, 0x3ff);
        break;
      case 'float32':
      case 'float64':
        data[i] = (r() - 0.5) * 1e6;
        break;
      case 'int8':
        data[i] = randomInt(r, -128, 127);
        break;
      case 'uint8':
        data[i] = randomInt(r, 0, 255);
        break;
      case 'int16':
        data[i] = randomInt(r, -32768, 32767);
        break;
      case 'uint16':
        data[i] = randomInt(r, 0, 65535);
        break;
      case 'int32':
        data[i] = randomInt(r, -(2 ** 31), 2 ** 31 - 1);
        break;
      case 'uint32':
        data[i] = randomInt(r, 0, 2 ** 32 - 1);
        break;
    }
  }
  return data;
}
