import { authError, type Role } from './auth-failure.js';
import { concatBytes, readU64be, u64be } from './bytes.js';

/** "CNCL": lets a peer tell a Conclave handshake from garbage before anything else. */
export const HANDSHAKE_MAGIC = Uint8Array.of(0x43, 0x4e, 0x43, 0x4c);
export const PROTOCOL_VERSION = 1;
/** Suite 1: X25519, Ed25519, XSalsa20-Poly1305 (nacl.secretbox), SHA-512. The only one. */
export const SUITE_ID = 1;
export const HEADER_BYTES = 8;
export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const BOX_OVERHEAD_BYTES = 16;
/** At most this many rotation statements ride in message 2. */
export const MAX_ROTATIONS = 8;

export const MessageType = {
  hello: 1,
  response: 2,
  finish: 3,
  reject: 15,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** magic 4 ‖ version 1 ‖ type 1 ‖ suite 1 ‖ reserved 1 (zero). */
export function encodeHeader(type: MessageType): Uint8Array {
  return concatBytes(HANDSHAKE_MAGIC, Uint8Array.of(PROTOCOL_VERSION, type, SUITE_ID, 0));
}

/**
 * Checks the header of an inbound handshake message and returns its type. The receiving `role`
 * names the error: garbage is `malformed`, another version or suite is `unsupported` — never a
 * fallback, so a downgrade cannot be negotiated.
 */
export function decodeHeader(bytes: Uint8Array, role: Role): MessageType {
  if (bytes.length < HEADER_BYTES) throw authError(role, 'malformed', { detail: 'handshake message shorter than its header' });
  for (let i = 0; i < HANDSHAKE_MAGIC.length; i++) {
    if (bytes[i] !== HANDSHAKE_MAGIC[i]) throw authError(role, 'malformed', { detail: 'bad magic' });
  }
  const version = bytes[4] as number;
  const type = bytes[5] as number;
  const suite = bytes[6] as number;
  if (version !== PROTOCOL_VERSION || suite !== SUITE_ID) {
    throw authError(role, 'unsupported', {
      detail: `version ${version} suite ${suite}; this build speaks version ${PROTOCOL_VERSION} suite ${SUITE_ID}`,
      data: { version, suite },
    });
  }
  if (bytes[7] !== 0) throw authError(role, 'malformed', { detail: 'reserved header byte is not zero' });
  if (type !== MessageType.hello && type !== MessageType.response && type !== MessageType.finish && type !== MessageType.reject) {
    throw authError(role, 'malformed', { detail: `unknown handshake message type ${type}` });
  }
  return type;
}

/**
 * True for anything whose header names a REJECT (magic and type byte; version, suite and length
 * unchecked): such a message is never answered, whatever check it then fails, so two peers can
 * never bounce REJECTs at each other.
 */
export function isReject(bytes: Uint8Array): boolean {
  if (bytes.length < HEADER_BYTES) return false;
  for (let i = 0; i < HANDSHAKE_MAGIC.length; i++) if (bytes[i] !== HANDSHAKE_MAGIC[i]) return false;
  return bytes[5] === MessageType.reject;
}

/** Message 1, HELLO: header ‖ timestamp u64 ms ‖ node ephemeral X25519 key. 48 bytes. */
export const HELLO_BYTES = HEADER_BYTES + 8 + KEY_BYTES;
/** Message 2's clear part: header ‖ timestamp ‖ orchestrator ephemeral key, then the sealed payload. */
export const RESPONSE_CLEAR_BYTES = HEADER_BYTES + 8 + KEY_BYTES;
/** REJECT: header ‖ reason u8 ‖ sender's clock u64 ms. 17 bytes. */
export const REJECT_BYTES = HEADER_BYTES + 1 + 8;

export interface KeyShare {
  /** The sender's clock: all 64 bits, so a value no JS number holds is seen as the skew it is. */
  timestampMs: bigint;
  ephemeralKey: Uint8Array;
}

export function encodeKeyShare(type: MessageType, share: KeyShare): Uint8Array {
  return concatBytes(encodeHeader(type), u64be(share.timestampMs), share.ephemeralKey);
}

/** Reads timestamp and ephemeral key after an already-checked header. */
export function decodeKeyShare(bytes: Uint8Array): KeyShare {
  return {
    timestampMs: readU64be(bytes, HEADER_BYTES),
    ephemeralKey: bytes.slice(HEADER_BYTES + 8, HEADER_BYTES + 8 + KEY_BYTES),
  };
}

export function encodeReject(reason: number, timestampMs: number): Uint8Array {
  return concatBytes(encodeHeader(MessageType.reject), Uint8Array.of(reason), u64be(BigInt(timestampMs)));
}

export interface Reject {
  reason: number;
  /** The sender's clock, all 64 bits; only ever shown, never trusted. */
  timestampMs: bigint;
}

export function decodeReject(bytes: Uint8Array, role: Role): Reject {
  if (bytes.length !== REJECT_BYTES) throw authError(role, 'malformed', { detail: 'REJECT has the wrong length' });
  return { reason: bytes[HEADER_BYTES] as number, timestampMs: readU64be(bytes, HEADER_BYTES + 1) };
}
