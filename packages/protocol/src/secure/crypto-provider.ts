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

/**
 * Keys are imported as JWK: OpenSSL 3's DER decoders cost ~0.2-0.8 ms an import, more than the
 * X25519 or Ed25519 operation itself; JWK import is ~20-80 µs. For a private JWK Node requires
 * `x` to be a string but derives the public key from `d` alone; the byte-for-byte tests against
 * tweetnacl would catch any change in that.
 */
const PLACEHOLDER_X = 'A'.repeat(43);

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

function privateKey(crv: 'X25519' | 'Ed25519', secret: Uint8Array, publicKey?: Uint8Array): KeyObject {
  return createPrivateKey({
    key: { kty: 'OKP', crv, d: b64url(secret), x: publicKey ? b64url(publicKey) : PLACEHOLDER_X },
    format: 'jwk',
  });
}

function publicKeyObject(crv: 'X25519' | 'Ed25519', publicKey: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv, x: b64url(publicKey) }, format: 'jwk' });
}

function rawPublic(key: KeyObject): Uint8Array {
  const x = createPublicKey(key).export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new Error('node:crypto exported no public key');
  return new Uint8Array(Buffer.from(x, 'base64url'));
}

/** Signing keys are reused for every handshake an identity makes; importing one costs more than signing. */
const signingKeys = new WeakMap<Uint8Array, KeyObject>();

function signingKey(seed: Uint8Array): KeyObject {
  let key = signingKeys.get(seed);
  if (!key) {
    key = privateKey('Ed25519', seed);
    signingKeys.set(seed, key);
  }
  return key;
}

export const nodeCryptoProvider: CryptoProvider = {
  name: 'node',
  x25519PublicKey: (secretKey) => rawPublic(privateKey('X25519', secretKey)),
  x25519: (secretKey, publicKey) => {
    try {
      const own = privateKey('X25519', secretKey);
      const peer = publicKeyObject('X25519', publicKey);
      return new Uint8Array(diffieHellman({ privateKey: own, publicKey: peer }));
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
      return nodeVerify(null, message, publicKeyObject('Ed25519', publicKey), signature);
    } catch {
      return false;
    }
  },
};

/** The provider used when none is given: the fast path, with tweetnacl as the tested reference. */
export const defaultCryptoProvider: CryptoProvider = nodeCryptoProvider;
