export {
  AUTH_FAILURES,
  WIRE_REASON_NORMAL,
  authError,
  closeFailureOf,
  failureOf,
  failureOfWireReason,
  remoteAuthError,
  wireReasonOf,
  type AuthErrorOptions,
  type AuthFailure,
  type Role,
} from './auth-failure.js';
export {
  defaultCryptoProvider,
  nodeCryptoProvider,
  tweetnaclProvider,
  type CryptoProvider,
} from './crypto-provider.js';
export { isCanonicalScalar, safeX25519, verifySignature } from './safe-primitives.js';
export {
  defaultRandom,
  fingerprint,
  fingerprintDigest,
  generateIdentity,
  identityFromPem,
  identityFromSeed,
  identityToPem,
  loadIdentityFile,
  loadOrCreateIdentity,
  nodeIdFromPublicKey,
  parseFingerprint,
  type Identity,
  type LoadIdentityOptions,
  type LoadedIdentity,
  type RandomSource,
} from './identity.js';
export {
  PinSet,
  ROTATION_STATEMENT_BYTES,
  createRotationStatement,
  decodeRotationStatement,
  encodeRotationStatement,
  resolvePin,
  rotationStatementFromText,
  rotationStatementToText,
  verifyRotationStatement,
  type PinResolution,
  type RotationStatement,
} from './pins.js';
export {
  JOIN_STRING_PREFIX,
  JOIN_TOKEN_BYTES,
  decodeJoinString,
  encodeJoinString,
  generateJoinToken,
  hashToken,
  isValidAddress,
  tokenMatchesHash,
  type JoinInfo,
} from './join-string.js';
export {
  MemoryEnrollment,
  type EnrollOutcome,
  type EnrollRequest,
  type EnrollmentHooks,
  type MemoryEnrollmentOptions,
  type NodeRecord,
  type NodeStatus,
} from './enrollment.js';
export {
  DEFAULT_HANDSHAKE_BURST,
  DEFAULT_HANDSHAKE_MAX_SOURCES,
  DEFAULT_HANDSHAKE_REFILL_PER_SECOND,
  HandshakeRateLimiter,
  type HandshakeRateLimiterOptions,
  type RateDecision,
} from './handshake-rate-limiter.js';
export { MessageType, PROTOCOL_VERSION, SUITE_ID, encodeReject } from './handshake-messages.js';
export { PROTOCOL_NAME } from './key-schedule.js';
export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CLOCK_SKEW_MS,
  HandshakeInitiator,
  HandshakeResponder,
  createInitiator,
  createResponder,
  type EstablishedSession,
  type HandshakeStep,
  type InitiatorOptions,
  type InitiatorState,
  type ResponderOptions,
  type ResponderState,
} from './handshake.js';
export {
  DEFAULT_MAX_FRAMES_PER_KEY,
  DEFAULT_MAX_PLAINTEXT_BYTES,
  DEFAULT_REKEY_INTERVAL_MS,
  FRAME_OVERHEAD_BYTES,
  SealedChannel,
  createSealedChannel,
  type ChannelState,
  type OpenResult,
  type SealedChannelOptions,
  type SessionKeys,
} from './sealed-channel.js';
export { runHandshakeInMemory, type InMemoryHandshakeResult } from './in-memory-handshake.js';
