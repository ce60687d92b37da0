import type { CryptoProvider } from './crypto-provider.js';
import { isAllZero } from './bytes.js';

/** The Ed25519 group order L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
const ORDER_L = Uint8Array.from([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
]);

/**
 * Whether the S half of a signature is a canonical scalar (S < L). tweetnacl 1.0.3 skips this
 * check, so `S + L` verifies there: a second valid signature for the same message (malleability).
 */
export function isCanonicalScalar(signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  for (let i = 31; i >= 0; i--) {
    const s = signature[32 + i] as number;
    const l = ORDER_L[i] as number;
    if (s < l) return true;
    if (s > l) return false;
  }
  return false;
}

/** Ed25519 verification with the S < L check that tweetnacl lacks; never throws. */
export function verifySignature(
  provider: CryptoProvider,
  message: Uint8Array,
  signature: Uint8Array,
  publicKey: Uint8Array,
): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  if (!isCanonicalScalar(signature)) return false;
  return provider.verify(message, signature, publicKey);
}

/**
 * X25519 that returns undefined instead of an all-zero shared secret: tweetnacl returns zeros
 * silently for a zero or low-order peer key, and a zero secret would make the session keys public.
 */
export function safeX25519(
  provider: CryptoProvider,
  secretKey: Uint8Array,
  publicKey: Uint8Array,
): Uint8Array | undefined {
  if (secretKey.length !== 32 || publicKey.length !== 32) return undefined;
  const shared = provider.x25519(secretKey, publicKey);
  return isAllZero(shared) ? undefined : shared;
}
