import { createHash } from 'node:crypto';
import { authError } from './auth-failure.js';
import { bytesEqual, concatBytes, fromBase64Url, fromHex, toBase64Url, toHex, utf8 } from './bytes.js';
import { defaultRandom, parseFingerprint, type RandomSource } from './identity.js';

/** A join token is 32 random bytes: guessing one is hopeless even without the expiry. */
export const JOIN_TOKEN_BYTES = 32;
export const JOIN_STRING_PREFIX = 'conclave-join:v1:';

/** Tag of the optional last field: the orchestrator's TLS certificate. */
const TLS_FIELD_TAG = 'TLS';

/** What a board needs to join: where to dial, the single-use token, and the key to pin. */
export interface JoinInfo {
  /** `host:port`, `1.2.3.4:port` or `[v6]:port`. */
  address: string;
  token: Uint8Array;
  /** `SHA256:…` fingerprint of the orchestrator key. */
  fingerprint: string;
  /**
   * `SHA256:…` (base64url) of the orchestrator's TLS certificate, DER: present when the gateway
   * serves TLS. The node then connects with TLS and trusts the certificate with this digest.
   */
  tlsFingerprint?: string;
}

export function generateJoinToken(random: RandomSource = defaultRandom): Uint8Array {
  return random(JOIN_TOKEN_BYTES);
}

const TOKEN_HASH_DOMAIN = utf8('conclave/v1 join-token');

/** What the orchestrator stores instead of the token: hex SHA-256 with a domain prefix. */
export function hashToken(token: Uint8Array): string {
  return toHex(createHash('sha256').update(concatBytes(TOKEN_HASH_DOMAIN, token)).digest());
}

/** Constant-time check of a presented token against a stored hash. */
export function tokenMatchesHash(token: Uint8Array, storedHash: string): boolean {
  const stored = fromHex(storedHash);
  if (!stored) return false;
  return bytesEqual(fromHex(hashToken(token)) as Uint8Array, stored);
}

const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)):(\d{1,5})$/;

/** Whether `address` is `host:port` with a port in 1..65535 (IPv6 in brackets). */
export function isValidAddress(address: string): boolean {
  const match = HOST_PORT.exec(address);
  if (!match) return false;
  const port = Number(match[3]);
  return port >= 1 && port <= 65535;
}

/**
 * `conclave-join:v1:<address>:<token base64url>:SHA256:<fingerprint base64url>`, then
 * `:TLS:<certificate SHA-256 base64url>` when the orchestrator serves TLS.
 */
export function encodeJoinString(info: JoinInfo): string {
  if (!isValidAddress(info.address)) throw authError('node', 'join-string', { detail: `bad address ${info.address}` });
  if (info.token.length !== JOIN_TOKEN_BYTES) throw authError('node', 'join-string', { detail: 'token must be 32 bytes' });
  const fp = parseFingerprint(info.fingerprint);
  if (!fp) throw authError('node', 'join-string', { detail: 'bad fingerprint' });
  let tls = '';
  if (info.tlsFingerprint !== undefined) {
    const tlsFp = parseFingerprint(info.tlsFingerprint);
    if (!tlsFp) throw authError('node', 'join-string', { detail: 'bad TLS certificate fingerprint' });
    tls = `:${TLS_FIELD_TAG}:${tlsFp.slice('SHA256:'.length)}`;
  }
  return `${JOIN_STRING_PREFIX}${info.address}:${toBase64Url(info.token)}:${fp}${tls}`;
}

/**
 * Parses a join string, validating every field; throws NODE-AUTH-540 naming the bad field.
 * Parsed from the right because the address itself contains colons.
 */
export function decodeJoinString(text: string): JoinInfo {
  const fail = (detail: string) => authError('node', 'join-string', { detail });
  const trimmed = text.trim();
  if (!trimmed.startsWith(JOIN_STRING_PREFIX)) throw fail(`must start with ${JOIN_STRING_PREFIX}`);
  const parts = trimmed.slice(JOIN_STRING_PREFIX.length).split(':');
  // The TLS field is optional and last; without it the string is a v1 string as it always was.
  // Unambiguous: in a string without it the next-to-last field is `SHA256`.
  let tlsFingerprint: string | undefined;
  if (parts.length >= 2 && parts[parts.length - 2] === TLS_FIELD_TAG) {
    const tlsBody = parts.pop() ?? '';
    parts.pop();
    tlsFingerprint = parseFingerprint(`SHA256:${tlsBody}`);
    if (!tlsFingerprint) throw fail('bad TLS certificate fingerprint');
  }
  const fpBody = parts.pop();
  const fpTag = parts.pop();
  const tokenText = parts.pop();
  const address = parts.join(':');
  if (fpBody === undefined || fpTag !== 'SHA256' || tokenText === undefined) throw fail('missing fields');
  const fp = parseFingerprint(`SHA256:${fpBody}`);
  if (!fp) throw fail('bad fingerprint');
  const token = fromBase64Url(tokenText);
  if (token?.length !== JOIN_TOKEN_BYTES) throw fail('bad token');
  if (!isValidAddress(address)) throw fail(`bad address ${JSON.stringify(address)}`);
  return { address, token, fingerprint: fp, ...(tlsFingerprint ? { tlsFingerprint } : {}) };
}
