/**
 * Bytes that are not a model. Starts with 't' (0x74: protobuf field 14, wire type 4,
 * an end-group with no start), so a protobuf parser fails on the first byte rather
 * than reading an empty ModelProto.
 */
export function notOnnxBytes(): Uint8Array {
  return new TextEncoder().encode('this is not an ONNX model, only text that looks nothing like protobuf\n'.repeat(4));
}
