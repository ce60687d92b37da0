import { ConclaveError } from '@conclave/common';
import {
  protobuf, protoDir, type SidecarRequest, type SidecarRequest__Output, type SidecarResponse,
  type SidecarResponse__Output, type SidecarTensor,
} from '@conclave/protocol';

/** The length prefix of every frame: a 4-byte big-endian byte count. */
export const FRAME_HEADER_BYTES = 4;
/**
 * The largest frame either side accepts unless told: a batch of 640×640×3 frames and their
 * outputs fit many times over, and a corrupt length cannot make the agent allocate gigabytes.
 */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** What a 4-byte prefix can say at most. */
const MAX_ENCODABLE_FRAME_BYTES = 0xffff_ffff;

const SIDECAR_PROTO = 'conclave/v1/hailo_sidecar.proto';

/**
 * The conversion the generated `__Output` types describe: PROTO_LOADER_OPTIONS of
 * @conclave/protocol, so a decoded response has exactly their shape.
 */
const CONVERSION: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, oneofs: true, bytes: Buffer };

interface SidecarTypes {
  readonly request: protobuf.Type;
  readonly response: protobuf.Type;
  readonly infer: protobuf.Type;
  readonly tensor: protobuf.Type;
}

let types: SidecarTypes | undefined;

function sidecarTypes(): SidecarTypes {
  if (!types) {
    const root = new protobuf.Root();
    const dir = protoDir();
    root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : `${dir}/${target}`);
    root.loadSync(SIDECAR_PROTO, { keepCase: false });
    root.resolveAll();
    types = {
      request: root.lookupType('conclave.v1.SidecarRequest'),
      response: root.lookupType('conclave.v1.SidecarResponse'),
      infer: root.lookupType('conclave.v1.SidecarInferRequest'),
      tensor: root.lookupType('conclave.v1.SidecarTensor'),
    };
  }
  return types;
}

/** The wire tag of a length-delimited field. */
function lengthDelimitedTag(field: number): number {
  return (field << 3) | 2;
}

const REQUEST_INFER_FIELD = 4;
const INFER_INPUTS_FIELD = 2;
const TENSOR_DATA_FIELD = 4;

function varintBytes(value: number): number {
  let bytes = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 128)) bytes += 1;
  return bytes;
}

function writeVarint(target: Buffer, offset: number, value: number): number {
  let at = offset;
  let v = value;
  while (v >= 0x80) {
    target[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  target[at++] = v;
  return at;
}

/** Tag, then the varint length of the field that follows. */
function fieldHeader(field: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(1 + varintBytes(length));
  out[0] = lengthDelimitedTag(field);
  writeVarint(out, 1, length);
  return out;
}

function lengthPrefix(frameBytes: number): Buffer {
  if (frameBytes > MAX_ENCODABLE_FRAME_BYTES) {
    throw new RangeError(`sidecar frame of ${frameBytes} bytes does not fit a 4-byte length`);
  }
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  out.writeUInt32BE(frameBytes, 0);
  return out;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function encodeMessage(type: protobuf.Type, message: object): Buffer {
  return asBuffer(type.encode(type.fromObject(message)).finish());
}

function byteLength(chunks: readonly Buffer[]): number {
  let total = 0;
  for (const chunk of chunks) total += chunk.length;
  return total;
}

/**
 * An infer request laid out by hand so that each tensor's bytes go to the socket as the
 * caller's own Buffer: protobufjs would copy every input into its output buffer, about a
 * quarter of a millisecond per 640×640×3 frame on a Pi 5. The fields come in field-number
 * order, so the bytes are exactly what protobufjs writes for the same message.
 */
function encodeInferRequestFrame(id: number, infer: NonNullable<SidecarRequest['infer']>): Buffer[] {
  const t = sidecarTypes();
  const head = encodeMessage(t.request, { id });
  const modelPart = encodeMessage(t.infer, { modelId: infer.modelId ?? '' });
  const timeoutPart = encodeMessage(t.infer, { timeoutMs: infer.timeoutMs ?? 0 });
  const body: Buffer[] = [modelPart];
  for (const input of infer.inputs ?? []) body.push(...encodeTensor(t.tensor, input));
  body.push(timeoutPart);
  const bodyBytes = byteLength(body);
  const bodyHeader = fieldHeader(REQUEST_INFER_FIELD, bodyBytes);
  const frameBytes = head.length + bodyHeader.length + bodyBytes;
  return [Buffer.concat([lengthPrefix(frameBytes), head, bodyHeader]), ...body];
}

function encodeTensor(tensorType: protobuf.Type, tensor: SidecarTensor): Buffer[] {
  const { data, ...rest } = tensor;
  const meta = encodeMessage(tensorType, rest);
  const bytes = data === undefined ? Buffer.alloc(0) : typeof data === 'string' ? Buffer.from(data, 'base64') : asBuffer(data);
  // An empty bytes field is left out, as proto3 allows: it decodes to the same empty default.
  const dataHeader = bytes.length > 0 ? fieldHeader(TENSOR_DATA_FIELD, bytes.length) : Buffer.alloc(0);
  const tensorBytes = meta.length + dataHeader.length + bytes.length;
  const parts: Buffer[] = [Buffer.concat([fieldHeader(INFER_INPUTS_FIELD, tensorBytes), meta, dataHeader])];
  if (bytes.length > 0) parts.push(bytes);
  return parts;
}

/**
 * One request as the chunks of its frame, length prefix first, to be written in order (corked,
 * so that Node writes them with one writev). Tensor data is not copied: the caller's buffers
 * must not change until the request is answered.
 */
export function encodeRequestFrame(request: SidecarRequest & { id: number }): Buffer[] {
  if (request.body === 'infer' || (request.body === undefined && request.infer)) {
    return encodeInferRequestFrame(request.id, request.infer ?? {});
  }
  const payload = encodeMessage(sidecarTypes().request, request);
  return [lengthPrefix(payload.length), payload];
}

/** The response side of the codec, for test servers and the benchmark's fake sidecar. */
export function encodeResponseFrame(response: SidecarResponse): Buffer[] {
  const payload = encodeMessage(sidecarTypes().response, response);
  return [lengthPrefix(payload.length), payload];
}

/** protobufjs decodes bytes as views of the frame; a view that is not a Buffer becomes one, still without a copy. */
function normaliseBytes(value: unknown): unknown {
  if (value instanceof Uint8Array) return asBuffer(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = normaliseBytes(value[i]);
    return value;
  }
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) record[key] = normaliseBytes(record[key]);
  }
  return value;
}

function decodeWith<T>(type: protobuf.Type, frame: Buffer): T {
  try {
    return normaliseBytes(type.toObject(type.decode(frame), CONVERSION)) as T;
  } catch (err) {
    throw new ConclaveError('NODE-NET-632', {
      detail: `undecodable ${type.name} (${frame.length} bytes): ${err instanceof Error ? err.message : String(err)}`,
      cause: err,
    });
  }
}

/**
 * Decodes one frame's payload (without its length prefix). Tensor data in the result are views
 * of `frame`, not copies. An undecodable payload is NODE-NET-632.
 */
export function decodeResponse(frame: Buffer): SidecarResponse__Output {
  return decodeWith<SidecarResponse__Output>(sidecarTypes().response, frame);
}

/** The request side of the decoder, for test servers and the benchmark's fake sidecar. */
export function decodeRequest(frame: Buffer): SidecarRequest__Output {
  return decodeWith<SidecarRequest__Output>(sidecarTypes().request, frame);
}

/**
 * Cuts a byte stream into frame payloads. A payload that arrives inside one chunk is returned
 * as a view of it; one spread over chunks is copied once into a buffer of its final size.
 * A length above `maxFrameBytes` is NODE-NET-632: the stream cannot be trusted after it, so the
 * reader must drop the connection.
 */
export class FrameReader {
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFilled = 0;
  private partial: Buffer | undefined;
  private partialFilled = 0;

  constructor(readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1) {
      throw new RangeError(`FrameReader: maxFrameBytes must be a positive integer, got ${maxFrameBytes}`);
    }
  }

  /** Bytes of a frame begun and not finished; non-zero when a stream ends mid-frame. */
  get pendingBytes(): number {
    return this.headerFilled + this.partialFilled;
  }

  /** The size of the frame being read, when its header is in. */
  get pendingFrameBytes(): number | undefined {
    return this.partial?.length;
  }

  /** Every frame completed by `chunk`, in order. */
  push(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.partial === undefined) {
        let length: number;
        if (this.headerFilled === 0 && chunk.length - offset >= FRAME_HEADER_BYTES) {
          length = chunk.readUInt32BE(offset);
          offset += FRAME_HEADER_BYTES;
        } else {
          const take = Math.min(FRAME_HEADER_BYTES - this.headerFilled, chunk.length - offset);
          chunk.copy(this.header, this.headerFilled, offset, offset + take);
          this.headerFilled += take;
          offset += take;
          if (this.headerFilled < FRAME_HEADER_BYTES) break;
          length = this.header.readUInt32BE(0);
          this.headerFilled = 0;
        }
        if (length > this.maxFrameBytes) {
          throw new ConclaveError('NODE-NET-632', {
            detail: `frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`,
            data: { frameBytes: length, maxFrameBytes: this.maxFrameBytes },
          });
        }
        if (chunk.length - offset >= length) {
          frames.push(chunk.subarray(offset, offset + length));
          offset += length;
          continue;
        }
        this.partial = Buffer.allocUnsafe(length);
        this.partialFilled = 0;
      }
      const take = Math.min(this.partial.length - this.partialFilled, chunk.length - offset);
      chunk.copy(this.partial, this.partialFilled, offset, offset + take);
      this.partialFilled += take;
      offset += take;
      if (this.partialFilled === this.partial.length) {
        frames.push(this.partial);
        this.partial = undefined;
        this.partialFilled = 0;
      }
    }
    return frames;
  }
}
