import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { nodeCryptoProvider, tweetnaclProvider } from './crypto-provider.js';
import { isCanonicalScalar, safeX25519, verifySignature } from './safe-primitives.js';
import { deterministicRandom } from './test-support.js';

const ORDER_L = (1n << 252n) + 27742317777372353535851937790883648493n;

function withS(signature: Uint8Array, s: bigint): Uint8Array {
  const out = Uint8Array.from(signature);
  for (let i = 0; i < 32; i++) {
    out[32 + i] = Number(s & 0xffn);
    s >>= 8n;
  }
  return out;
}

function sOf(signature: Uint8Array): bigint {
  let s = 0n;
  for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(signature[32 + i] as number);
  return s;
}

/** Curve25519 points of small order (RFC 7748 §6.1 and the usual blacklist), as peer keys. */
const LOW_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((hex) => Uint8Array.from(Buffer.from(hex, 'hex')));

describe('node:crypto fast path against the tweetnacl reference', () => {
  const random = deterministicRandom('providers');

  it('X25519 public keys and shared secrets are byte-identical (random and non-canonical inputs)', () => {
    for (let i = 0; i < 200; i++) {
      const a = random(32);
      const peer = random(32); // arbitrary 32 bytes, including ones with the high bit set
      expect(nodeCryptoProvider.x25519PublicKey(a)).toEqual(tweetnaclProvider.x25519PublicKey(a));
      expect(nodeCryptoProvider.x25519(a, peer)).toEqual(tweetnaclProvider.x25519(a, peer));
    }
  });

  it('both return zeros for low-order peer keys, and safeX25519 refuses them', () => {
    const secret = random(32);
    for (const point of LOW_ORDER) {
      for (const provider of [tweetnaclProvider, nodeCryptoProvider]) {
        expect(provider.x25519(secret, point)).toEqual(new Uint8Array(32));
        expect(safeX25519(provider, secret, point)).toBeUndefined();
      }
    }
  });

  it('Ed25519 keys and signatures are byte-identical', () => {
    for (let i = 0; i < 50; i++) {
      const seed = random(32);
      const message = random(i * 7);
      const publicKey = tweetnaclProvider.ed25519PublicKey(seed);
      expect(nodeCryptoProvider.ed25519PublicKey(seed)).toEqual(publicKey);
      expect(nodeCryptoProvider.sign(message, seed, publicKey)).toEqual(tweetnaclProvider.sign(message, seed, publicKey));
    }
  });

  it('verification agrees on valid, tampered, wrong-key and garbage signatures', () => {
    for (let i = 0; i < 50; i++) {
      const seed = random(32);
      const publicKey = tweetnaclProvider.ed25519PublicKey(seed);
      const message = random(40);
      const good = tweetnaclProvider.sign(message, seed, publicKey);
      const tampered = Uint8Array.from(good);
      tampered[i % 64] = (tampered[i % 64] as number) ^ 4;
      const cases: Array<[Uint8Array, Uint8Array]> = [
        [good, publicKey],
        [tampered, publicKey],
        [good, tweetnaclProvider.ed25519PublicKey(random(32))],
        [random(64), publicKey],
        [good, random(32)],
      ];
      for (const [signature, key] of cases) {
        expect(verifySignature(nodeCryptoProvider, message, signature, key)).toBe(
          verifySignature(tweetnaclProvider, message, signature, key),
        );
      }
      expect(verifySignature(nodeCryptoProvider, message, good, publicKey)).toBe(true);
    }
  });

  it('a malleated signature (S + L) passes plain tweetnacl but not verifySignature', () => {
    const seed = random(32);
    const publicKey = tweetnaclProvider.ed25519PublicKey(seed);
    const message = new Uint8Array(Buffer.from('transcript'));
    const good = tweetnaclProvider.sign(message, seed, publicKey);
    const malleated = withS(good, sOf(good) + ORDER_L);
    expect(nacl.sign.detached.verify(message, malleated, publicKey)).toBe(true);
    expect(isCanonicalScalar(good)).toBe(true);
    expect(isCanonicalScalar(malleated)).toBe(false);
    for (const provider of [tweetnaclProvider, nodeCryptoProvider]) {
      expect(verifySignature(provider, message, malleated, publicKey)).toBe(false);
    }
  });

  it('isCanonicalScalar draws the line exactly at L', () => {
    const zero = new Uint8Array(64);
    expect(isCanonicalScalar(withS(zero, ORDER_L - 1n))).toBe(true);
    expect(isCanonicalScalar(withS(zero, ORDER_L))).toBe(false);
    expect(isCanonicalScalar(withS(zero, (1n << 256n) - 1n))).toBe(false);
    expect(isCanonicalScalar(new Uint8Array(63))).toBe(false);
  });
});
