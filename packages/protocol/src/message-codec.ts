import protobuf from 'protobufjs';
import type { NodeMessage, NodeMessage__Output } from './generated/conclave/v1/NodeMessage.js';
import type { OrchestratorMessage, OrchestratorMessage__Output } from './generated/conclave/v1/OrchestratorMessage.js';
import { PROTO_FILES, protoDir } from './load-protos.js';

/**
 * Protobuf encoding of session messages for sealing. gRPC serialises the frame; what goes
 * inside a sealed frame is encoded here, with the same conversion options as the loader,
 * so a decoded message has exactly the shape of the generated `__Output` types.
 */
const CONVERSION: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, oneofs: true };

let types: { node: protobuf.Type; orchestrator: protobuf.Type } | undefined;

function messageTypes(): { node: protobuf.Type; orchestrator: protobuf.Type } {
  if (!types) {
    const root = new protobuf.Root();
    const dir = protoDir();
    root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : `${dir}/${target}`);
    root.loadSync(PROTO_FILES, { keepCase: false });
    root.resolveAll();
    types = { node: root.lookupType('conclave.v1.NodeMessage'), orchestrator: root.lookupType('conclave.v1.OrchestratorMessage') };
  }
  return types;
}

export class MessageDecodeError extends Error {
  override readonly name = 'MessageDecodeError';
}

function encode(type: protobuf.Type, message: object): Uint8Array {
  return type.encode(type.fromObject(message)).finish();
}

function decode<T>(type: protobuf.Type, bytes: Uint8Array): T {
  try {
    const object = type.toObject(type.decode(bytes), CONVERSION) as Record<string, unknown>;
    return normaliseBytes(object) as T;
  } catch (err) {
    throw new MessageDecodeError(err instanceof Error ? err.message : String(err));
  }
}

/** protobufjs decodes bytes fields as Uint8Array views; callers expect Buffers, as from gRPC. */
function normaliseBytes(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(normaliseBytes);
  if (value && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) (value as Record<string, unknown>)[key] = normaliseBytes(inner);
  }
  return value;
}

export function encodeNodeMessage(message: NodeMessage): Uint8Array {
  return encode(messageTypes().node, message);
}

export function decodeNodeMessage(bytes: Uint8Array): NodeMessage__Output {
  return decode<NodeMessage__Output>(messageTypes().node, bytes);
}

export function encodeOrchestratorMessage(message: OrchestratorMessage): Uint8Array {
  return encode(messageTypes().orchestrator, message);
}

export function decodeOrchestratorMessage(bytes: Uint8Array): OrchestratorMessage__Output {
  return decode<OrchestratorMessage__Output>(messageTypes().orchestrator, bytes);
}
