import type { DType, TensorData } from '@conclave/protocol';

/**
 * Element types, as on the wire (`Tensor.dtype`) and in onnxruntime-node. Typed arrays
 * follow the codec: float16 as raw bits in a Uint16Array, bool as 0/1 bytes.
 */
export type ElementType = DType;

/** A tensor in host memory: what the `expected` references take and return. */
export interface HostTensor {
  readonly dtype: ElementType;
  readonly dims: readonly number[];
  readonly data: TensorData;
}

/**
 * A declared input or output, shaped like the wire `TensorSpec`: a dimension of -1 is
 * symbolic and its symbol is in `dimNames` ('' for fixed dimensions).
 */
export interface ModelTensorSpec {
  name: string;
  dtype: ElementType;
  dims: number[];
  dimNames: string[];
}

type TypedArrayConstructor = {
  new (length: number): TensorData;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
};

const CONSTRUCTORS: Readonly<Record<ElementType, TypedArrayConstructor>> = {
  float32: Float32Array,
  float16: Uint16Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
};

/** The typed array class that holds `dtype`. */
export function dataConstructor(dtype: ElementType): TypedArrayConstructor {
  return CONSTRUCTORS[dtype];
}

/** Number of elements in a tensor of `dims` (1 for a scalar). */
export function elementCount(dims: readonly number[]): number {
  return dims.reduce((n, d) => n * d, 1);
}

/** A host tensor; checks that `data` holds exactly the elements `dims` ask for. */
export function hostTensor(dtype: ElementType, dims: readonly number[], data: TensorData): HostTensor {
  if (data.length !== elementCount(dims)) {
    throw new Error(`hostTensor: ${data.length} elements for dims [${dims.join(', ')}]`);
  }
  return { dtype, dims: [...dims], data };
}

/** The tensor's bytes, little-endian as on the wire (every platform Node targets is little-endian). */
export function hostTensorBytes(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}
