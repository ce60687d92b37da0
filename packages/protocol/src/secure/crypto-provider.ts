import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import nacl from 'tweetnacl';
import { concatBytes } from './bytes.js';

/**
 * The public-key primitives the session uses. tweetnacl is the reference; the node:crypto
 * provider gives the same bytes (X25519 and Ed25519 are deterministic) many times faster.
 * Neither checks for the tweetnacl traps: `safe-primitives.ts` does that above both, so the
 * checks cannot be lost by switching providers.
 */
export interface CryptoProvider {
  readonly name: 'tweetnacl' | 'node';
  /** X25519 public key of a 32-byte secret (the secret is clamped as RFC 7748 says). */
  x25519PublicKey(secretKey: Uint8Array): Uint8Array;
  /** Raw X25519; returns 32 zero bytes for a low-order peer key instead of throwing. */
  x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array;
  /** Ed25519 public key of a 32-byte seed. */
  ed25519PublicKey(seed: Uint8Array): Uint8Array;
  /** Ed25519 signature (64 bytes) by the key with this seed and public key. */
  sign(message: Uint8Array, seed: Uint8Array, publicKey: Uint8Array): Uint8Array;
  /** Raw Ed25519 verification; callers must check S < L first (see `verifySignature`). */
  verify(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean;
}

export const tweetnaclProvider: CryptoProvider = {
  name: 'tweetnacl',
  x25519PublicKey: (secretKey) => nacl.scalarMult.base(secretKey),
  x25519: (secretKey, publicKey) => nacl.scalarMult(secretKey, publicKey),
  ed25519PublicKey: (seed) => nacl.sign.keyPair.fromSeed(seed).publicKey,
  sign: (message, seed, publicKey) => nacl.sign.detached(message, concatBytes(seed, publicKey)),
  verify: (message, signature, publicKey) => nacl.sign.detached.verify(message, signature, publicKey),
};

// DER prefixes that wrap a raw 32-byte key as PKCS#8 / SPKI (RFC 8410).
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');

function der(prefix: Buffer, key: Uint8Array): Buffer {
  return Buffer.concat([prefix, key]);
}

function rawPublic(key: KeyObject): Uint8Array {
  const spki = key.export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(spki.length - 32));
}

/** Signing keys are reused for every handshake an identity makes; importing one costs more than signing. */
const signingKeys = new WeakMap<Uint8Array, KeyObject>();

function signingKey(seed: Uint8Array): KeyObject {
  let key = signingKeys.get(seed);
  if (!key) {
    key = createPrivateKey({ key: der(ED25519_PKCS8, seed), format: 'der', type: 'pkcs8' });
    signingKeys.set(seed, key);
  }
  return key;
}

export const nodeCryptoProvider: CryptoProvider = {
  name: 'node',
  x25519PublicKey: (secretKey) =>
    rawPublic(createPrivateKey({ key: der(X25519_PKCS8, secretKey), format: 'der', type: 'pkcs8' })),
  x25519: (secretKey, publicKey) => {
    const privateKey = createPrivateKey({ key: der(X25519_PKCS8, secretKey), format: 'der', type: 'pkcs8' });
    const peer = createPublicKey({ key: der(X25519_SPKI, publicKey), format: 'der', type: 'spki' });
    try {
      return new Uint8Array(diffieHellman({ privateKey, publicKey: peer }));
    } catch {
      // OpenSSL refuses an all-zero shared secret (RFC 7748 §6.1) where tweetnacl returns it;
      // returning zeros keeps both providers identical and the caller's zero check decisive.
      return new Uint8Array(32);
    }
  },
  ed25519PublicKey: (seed) => rawPublic(signingKey(seed)),
  sign: (message, seed) => new Uint8Array(nodeSign(null, message, signingKey(seed))),
  verify: (message, signature, publicKey) => {
    if (signature.length !== 64 || publicKey.length !== 32) return false;
    try {
      const key = createPublicKey({ key: der(ED25519_SPKI, publicKey), format: 'der', type: 'spki' });
      return nodeVerify(null, message, key, signature);
    } catch {
      return false;
    }
  },
};

/** The provider used when none is given: the fast path, with tweetnacl as the tested reference. */
export const defaultCryptoProvider: CryptoProvider = nodeCryptoProvider;
