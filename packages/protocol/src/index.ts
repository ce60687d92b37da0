export type * from './generated/index.js';
export type { ProtoGrpcType as ControlProtoGrpcType } from './generated/control.js';
export type { ProtoGrpcType as GatewayProtoGrpcType } from './generated/gateway.js';
export { loadConclaveProtos, protoDir, PROTO_LOADER_OPTIONS } from './load-protos.js';
export { default as protobuf } from 'protobufjs';
export type { ConclaveProtos } from './load-protos.js';
export {
  createControlClient, createGatewayClient, DEFAULT_CHANNEL_OPTIONS, MAX_MESSAGE_BYTES, tlsCertificateFingerprint,
} from './clients.js';
export type { ClientOptions, ClientTlsOptions } from './clients.js';
export {
  DTYPES, DTYPE_BYTES, TensorFormatError, elementCount, isDType, tensorFromJson, tensorFromTypedArray,
  tensorMapFromJson, tensorMapToJson, tensorToJson, typedArrayFromTensor,
} from './tensor-codec.js';
export type { DType, JsonTensor, TensorData, WireTensor } from './tensor-codec.js';
export { checkInputs, formatSignature } from './signature.js';
export { jobErrorOf } from './job-error.js';
export { SecureSession } from './secure-session.js';
export type {
  FrameStream, HandshakeSide, SecureSessionOptions, SecureSessionState, SessionErrorCodes, SessionFrame,
} from './secure-session.js';
export { grpcFrameStream } from './grpc-frame-stream.js';
export { inMemoryFrameStreams } from './in-memory-frame-stream.js';
export * from './secure/index.js';
export {
  MessageDecodeError, decodeNodeMessage, decodeOrchestratorMessage, encodeNodeMessage, encodeOrchestratorMessage,
} from './message-codec.js';
export {
  CHAT_FLEET_ROOM, CHAT_ROOM_NAME_PATTERN, CHAT_TOKEN_PATTERN, chatClaimJson, chatContextJson, chatMessageJson, chatPostedJson, chatReleasedJson, chatResyncJson, chatRoomJson, formatChatMessage,
} from './chat-json.js';
export type { ChatMessageJson } from './chat-json.js';
