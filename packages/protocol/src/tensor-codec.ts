/**
 * A tensor as it crosses the wire (the `conclave.v1.Tensor` message as decoded): row-major,
 * little-endian element bytes in `raw`.
 */
export interface WireTensor {
  dtype: string;
  dims: number[];
  raw: Buffer;
}

/** ONNX element types that cross the wire, by the names the protos use. */
export const DTYPES = [
  'float32', 'float64', 'float16', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'bool',
] as const;
export type DType = (typeof DTYPES)[number];

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, int8: 1, uint8: 1, int16: 2, uint16: 2,
  int32: 4, uint32: 4, int64: 8, uint64: 8, bool: 1,
};

export type TensorData =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/** The JSON form of a tensor used by the CLI and docs: data is a flat row-major array. */
export interface JsonTensor {
  dtype: string;
  dims: number[];
  data: Array<number | boolean | string>;
}

export class TensorFormatError extends Error {
  override readonly name = 'TensorFormatError';
}

export function isDType(value: string): value is DType {
  return (DTYPES as readonly string[]).includes(value);
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((n, d) => n * d, 1);
}

function requireDType(dtype: string): DType {
  if (!isDType(dtype)) throw new TensorFormatError(`unknown dtype "${dtype}"; expected one of ${DTYPES.join(', ')}`);
  return dtype;
}

function checkDims(dims: readonly number[]): void {
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new TensorFormatError(`invalid dimension ${String(d)} in [${dims.join(', ')}]`);
  }
}

/**
 * A typed-array view of a wire tensor. The view shares the tensor's bytes when they are
 * aligned for the element type, and copies otherwise (Buffers from gRPC are often unaligned).
 * float16 and bool come back as raw Uint8Array / Uint16Array.
 */
export function typedArrayFromTensor(tensor: WireTensor): TensorData {
  const dtype = requireDType(tensor.dtype);
  const dims = tensor.dims.map(Number);
  checkDims(dims);
  const raw = tensor.raw;
  const expectedBytes = elementCount(dims) * DTYPE_BYTES[dtype];
  if (raw.byteLength !== expectedBytes) {
    throw new TensorFormatError(
      `tensor of ${dtype}[${dims.join(', ')}] needs ${expectedBytes} bytes, got ${raw.byteLength}`,
    );
  }
  const width = DTYPE_BYTES[dtype];
  const aligned = raw.byteOffset % width === 0;
  const buffer = aligned ? raw.buffer : new Uint8Array(raw).buffer;
  const offset = aligned ? raw.byteOffset : 0;
  const n = elementCount(dims);
  switch (dtype) {
    case 'float32': return new Float32Array(buffer, offset, n);
    case 'float64': return new Float64Array(buffer, offset, n);
    case 'float16': return new Uint16Array(buffer, offset, n);
    case 'int8': return new Int8Array(buffer, offset, n);
    case 'uint8': return new Uint8Array(buffer, offset, n);
    case 'bool': return new Uint8Array(buffer, offset, n);
    case 'int16': return new Int16Array(buffer, offset, n);
    case 'uint16': return new Uint16Array(buffer, offset, n);
    case 'int32': return new Int32Array(buffer, offset, n);
    case 'uint32': return new Uint32Array(buffer, offset, n);
    case 'int64': return new BigInt64Array(buffer, offset, n);
    case 'uint64': return new BigUint64Array(buffer, offset, n);
  }
}

/** A wire tensor over the bytes of a typed array (no copy). */
export function tensorFromTypedArray(dtype: DType, dims: readonly number[], data: TensorData): WireTensor {
  checkDims(dims);
  if (data.length !== elementCount(dims)) {
    throw new TensorFormatError(`${data.length} elements do not fill dims [${dims.join(', ')}]`);
  }
  return { dtype, dims: [...dims], raw: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
}

function allocate(dtype: DType, n: number): TensorData {
  switch (dtype) {
    case 'float32': return new Float32Array(n);
    case 'float64': return new Float64Array(n);
    case 'float16': return new Uint16Array(n);
    case 'int8': return new Int8Array(n);
    case 'uint8': case 'bool': return new Uint8Array(n);
    case 'int16': return new Int16Array(n);
    case 'uint16': return new Uint16Array(n);
    case 'int32': return new Int32Array(n);
    case 'uint32': return new Uint32Array(n);
    case 'int64': return new BigInt64Array(n);
    case 'uint64': return new BigUint64Array(n);
  }
}

/** Parses the JSON form `{dtype, dims, data}`; 64-bit integers may be given as strings. */
export function tensorFromJson(json: unknown, name = 'tensor'): WireTensor {
  if (typeof json !== 'object' || json === null) throw new TensorFormatError(`${name}: expected {"dtype", "dims", "data"}`);
  const { dtype: rawDtype, dims, data } = json as Partial<JsonTensor>;
  const dtype = requireDType(String(rawDtype ?? 'float32'));
  if (!Array.isArray(dims) || !Array.isArray(data)) throw new TensorFormatError(`${name}: "dims" and "data" must be arrays`);
  const numericDims = dims.map(Number);
  checkDims(numericDims);
  const n = elementCount(numericDims);
  if (data.length !== n) {
    throw new TensorFormatError(`${name}: dims [${numericDims.join(', ')}] hold ${n} elements, data has ${data.length}`);
  }
  const out = allocate(dtype, n);
  data.forEach((value, i) => {
    if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
      if (typeof value === 'boolean') throw new TensorFormatError(`${name}: element ${i} is not an integer`);
      try { out[i] = BigInt(value); } catch { throw new TensorFormatError(`${name}: element ${i} is not an integer`); }
      return;
    }
    const number = typeof value === 'boolean' ? Number(value) : Number(value);
    if (!Number.isFinite(number) && !(dtype.startsWith('float') && typeof value === 'number')) {
      throw new TensorFormatError(`${name}: element ${i} is not a number`);
    }
    out[i] = dtype === 'bool' ? (number ? 1 : 0) : number;
  });
  return tensorFromTypedArray(dtype, numericDims, out);
}

/** The JSON form of a wire tensor; 64-bit integers become numbers when safe, strings otherwise. */
export function tensorToJson(tensor: WireTensor): JsonTensor {
  const dtype = requireDType(tensor.dtype);
  const data = typedArrayFromTensor(tensor);
  const values: Array<number | boolean | string> = [];
  for (const value of data) {
    if (typeof value === 'bigint') {
      values.push(value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value.toString());
    } else {
      values.push(dtype === 'bool' ? value !== 0 : value);
    }
  }
  return { dtype, dims: tensor.dims.map(Number), data: values };
}

/** Parses `{"<name>": {dtype, dims, data}, …}`. */
export function tensorMapFromJson(json: unknown): Record<string, WireTensor> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new TensorFormatError('inputs must be an object: {"<tensor name>": {"dtype", "dims", "data"}}');
  }
  return Object.fromEntries(Object.entries(json).map(([name, value]) => [name, tensorFromJson(value, name)]));
}

export function tensorMapToJson(tensors: Record<string, WireTensor>): Record<string, JsonTensor> {
  return Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, tensorToJson(t)]));
}
