import {
  isDType, typedArrayFromTensor, type DType, type TensorData, type WireTensor,
} from '@conclave/protocol';

/**
 * A tensor crossing the worker boundary. Its bytes fill `buffer` exactly (offset 0,
 * aligned for any element type), so the buffer can be transferred, not cloned, and the
 * receiver views it without copying.
 */
export interface TransferTensor {
  readonly dtype: DType;
  readonly dims: number[];
  readonly buffer: ArrayBuffer;
}

/**
 * Main thread → worker. Copies the bytes once into a buffer of their own: a wire tensor's
 * `raw` is often a slice of a pooled or gRPC-owned buffer, which must stay valid for its
 * owner (so it cannot be transferred) and may be misaligned for a typed array.
 */
export function toTransfer(tensor: WireTensor): TransferTensor {
  const buffer = new ArrayBuffer(tensor.raw.byteLength);
  new Uint8Array(buffer).set(tensor.raw);
  return { dtype: requireDType(tensor.dtype), dims: tensor.dims.map(Number), buffer };
}

/**
 * Worker → main thread, from a session output. No copy when the typed array spans its
 * whole ArrayBuffer (onnxruntime-node allocates each output that way); a copy otherwise,
 * because transferring a shared backing buffer would detach its other views.
 */
export function transferFromData(dtype: string, dims: readonly number[], data: TensorData): TransferTensor {
  const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
  const buffer = whole
    ? (data.buffer as ArrayBuffer)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice().buffer;
  return { dtype: requireDType(dtype), dims: [...dims], buffer };
}

/** A view of the transferred bytes with the element type's typed array; checks the size. */
export function dataOfTransfer(tensor: TransferTensor): TensorData {
  return typedArrayFromTensor({ dtype: tensor.dtype, dims: tensor.dims, raw: Buffer.from(tensor.buffer) });
}

/** A wire tensor over the transferred bytes (no copy). */
export function wireFromTransfer(tensor: TransferTensor): WireTensor {
  return { dtype: tensor.dtype, dims: [...tensor.dims], raw: Buffer.from(tensor.buffer) };
}

/** The buffers to list in `postMessage(…, transferList)`; each once, as postMessage requires. */
export function transferListOf(tensors: Readonly<Record<string, TransferTensor>>): ArrayBuffer[] {
  return [...new Set(Object.values(tensors).map((t) => t.buffer))];
}

function requireDType(dtype: string): DType {
  if (!isDType(dtype)) throw new TypeError(`tensor dtype "${dtype}" cannot cross to onnxruntime`);
  return dtype;
}
