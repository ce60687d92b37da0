import { createHash, hkdfSync } from 'node:crypto';
import { concatBytes, utf8 } from './bytes.js';

/** Names the whole suite; hashed as the first transcript state, so every key depends on it. */
export const PROTOCOL_NAME = 'conclave/v1 x25519-ed25519-xsalsa20poly1305-sha512';

export const HANDSHAKE_KEYS_INFO = 'conclave/v1 handshake keys';
export const SESSION_KEYS_INFO = 'conclave/v1 session keys';
export const REKEY_INFO = 'conclave/v1 rekey';

function sha512(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha512').update(data).digest());
}

/** HKDF (RFC 5869) with SHA-512. */
export function hkdfSha512(ikm: Uint8Array, salt: Uint8Array, info: string, length: number): Uint8Array {
  return new Uint8Array(hkdfSync('sha512', ikm, salt, utf8(info), length));
}

/**
 * The running transcript hash: h₀ = SHA-512(PROTOCOL_NAME), then h ← SHA-512(h ‖ bytes) for each
 * piece of each message in wire order (Noise's MixHash). Both sides must mix the same bytes.
 */
export class Transcript {
  #hash: Uint8Array = sha512(utf8(PROTOCOL_NAME));

  mix(bytes: Uint8Array): void {
    this.#hash = sha512(concatBytes(this.#hash, bytes));
  }

  /** A copy of the current 64-byte state. */
  get hash(): Uint8Array {
    return Uint8Array.from(this.#hash);
  }
}

export interface HandshakeKeys {
  /** Seals message 2's payload (the orchestrator's identity and signature). */
  responseKey: Uint8Array;
  /** Seals message 3's payload (the node's identity, signature and token). */
  finishKey: Uint8Array;
  /** Input to the session key derivation. */
  chainKey: Uint8Array;
}

/** (k₂ ‖ k₃ ‖ ck) = HKDF-SHA512(ikm = DH(e_n, e_o), salt = h after message 2's clear part, 96 bytes). */
export function deriveHandshakeKeys(sharedSecret: Uint8Array, transcriptHash: Uint8Array): HandshakeKeys {
  const okm = hkdfSha512(sharedSecret, transcriptHash, HANDSHAKE_KEYS_INFO, 96);
  return { responseKey: okm.slice(0, 32), finishKey: okm.slice(32, 64), chainKey: okm.slice(64, 96) };
}

export interface DirectionalKeys {
  nodeToOrchestrator: Uint8Array;
  orchestratorToNode: Uint8Array;
}

/** (k_n→o ‖ k_o→n) = HKDF-SHA512(ikm = ck, salt = final transcript hash, 64 bytes). */
export function deriveSessionKeys(chainKey: Uint8Array, finalHash: Uint8Array): DirectionalKeys {
  const okm = hkdfSha512(chainKey, finalHash, SESSION_KEYS_INFO, 64);
  return { nodeToOrchestrator: okm.slice(0, 32), orchestratorToNode: okm.slice(32, 64) };
}

/** k' = HKDF-SHA512(ikm = k, salt = empty, "conclave/v1 rekey", 32): one-way, so old frames stay safe. */
export function nextEpochKey(key: Uint8Array): Uint8Array {
  return hkdfSha512(key, new Uint8Array(0), REKEY_INFO, 32);
}
