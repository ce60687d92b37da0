import { createHash, createPrivateKey, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir } from '@conclave/common/core';
import { authError, type Role } from './auth-failure.js';
import { concatBytes, fromBase64Url, toBase64Url, toHex, utf8 } from './bytes.js';
import { defaultCryptoProvider, type CryptoProvider } from './crypto-provider.js';

/** A long-term Ed25519 identity: the orchestrator's `O` or a node's `N`. */
export interface Identity {
  /** 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** 32-byte Ed25519 seed (RFC 8032 private key); never leaves the process that owns it. */
  readonly seed: Uint8Array;
}

/** A source of random bytes; injected so that tests and the spec's vector are reproducible. */
export type RandomSource = (length: number) => Uint8Array;

export const defaultRandom: RandomSource = (length) => new Uint8Array(randomBytes(length));

export function identityFromSeed(seed: Uint8Array, provider: CryptoProvider = defaultCryptoProvider): Identity {
  if (seed.length !== 32) throw new RangeError('an Ed25519 seed is 32 bytes');
  return { seed: Uint8Array.from(seed), publicKey: provider.ed25519PublicKey(seed) };
}

export function generateIdentity(random: RandomSource = defaultRandom): Identity {
  return identityFromSeed(random(32));
}

const NODE_ID_DOMAIN = utf8('conclave/v1 node-id');

/**
 * `node_id` = hex of the first 16 bytes of SHA-256("conclave/v1 node-id" ‖ N_pk): 32 hex characters.
 * 128 bits means a second key with the same id would take ~2^128 work, so an id names one key.
 */
export function nodeIdFromPublicKey(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new RangeError('an Ed25519 public key is 32 bytes');
  return toHex(createHash('sha256').update(concatBytes(NODE_ID_DOMAIN, publicKey)).digest().subarray(0, 16));
}

/** The 32-byte SHA-256 digest of a raw Ed25519 public key; what pins and join strings carry. */
export function fingerprintDigest(publicKey: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(publicKey).digest());
}

/**
 * `SHA256:<base64url, unpadded>` of the raw 32-byte public key (SSH's shape, but over the raw key,
 * not SSH's wire blob, and base64url so it fits URLs and join strings unchanged).
 */
export function fingerprint(publicKey: Uint8Array): string {
  return `SHA256:${toBase64Url(fingerprintDigest(publicKey))}`;
}

/** Parses `SHA256:<43 base64url chars>` (the prefix may be omitted); undefined when malformed. */
export function parseFingerprint(text: string): string | undefined {
  const body = text.startsWith('SHA256:') ? text.slice('SHA256:'.length) : text;
  const digest = fromBase64Url(body);
  return digest?.length === 32 ? `SHA256:${body}` : undefined;
}

export interface LoadIdentityOptions {
  /** Whose key this is: decides the error prefix (`NODE-AUTH-520` vs `ORCH-AUTH-520`). */
  role: Role;
  /** @default 'node.key' for a node, 'orchestrator.key' for the orchestrator */
  fileName?: string;
  random?: RandomSource;
}

export interface LoadedIdentity {
  identity: Identity;
  path: string;
  /** True when the key did not exist and was generated now (first start). */
  created: boolean;
}

/**
 * Loads the identity in `dir`, creating it on first start. The file is a PKCS#8 PEM
 * (`openssl pkey -in node.key -text` reads it) created with mode 0600 in a 0700 directory.
 * A file that group or others may read is refused, as SSH refuses such keys: a copied key
 * is a stolen node.
 */
export async function loadOrCreateIdentity(dir: string, options: LoadIdentityOptions): Promise<LoadedIdentity> {
  const path = join(dir, options.fileName ?? (options.role === 'node' ? 'node.key' : 'orchestrator.key'));
  try {
    return { identity: await loadIdentityFile(path, options.role), path, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const identity = generateIdentity(options.random);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Write a private temp file and link it into place: link fails if another process won the
  // race, and a crash mid-write never leaves a half-written key under the real name.
  const temp = `${path}.${process.pid}.${toHex(defaultRandom(4))}.tmp`;
  const handle = await open(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await handle.writeFile(identityToPem(identity));
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return { identity: await loadIdentityFile(path, options.role), path, created: false };
  } finally {
    await unlink(temp);
  }
  // The key's name in its directory must survive a power cut too, or a board comes back keyless.
  await fsyncDir(dir);
  return { identity, path, created: true };
}

/** Reads an existing key file, enforcing mode 0600 (no bits for group or others). */
export async function loadIdentityFile(path: string, role: Role): Promise<Identity> {
  const info = await stat(path);
  if (!info.isFile()) {
    throw authError(role, 'key-file', { detail: `${path} is not a regular file`, data: { path } });
  }
  // Windows has no POSIX modes to check; everywhere else any group/other bit is refused.
  if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(3, '0');
    throw authError(role, 'key-file-mode', {
      detail: `${path} has mode ${mode}; run chmod 600 ${path}`,
      data: { path, mode },
    });
  }
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (cause) {
    throw authError(role, 'key-file', { detail: `cannot read ${path}`, data: { path }, cause });
  }
  return identityFromPem(pem, role, path);
}

export function identityToPem(identity: Identity): string {
  const der = concatBytes(Buffer.from('302e020100300506032b657004220420', 'hex'), identity.seed);
  const body = Buffer.from(der).toString('base64');
  return `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`;
}

export function identityFromPem(pem: string, role: Role, path = '(inline)'): Identity {
  try {
    const key = createPrivateKey({ key: pem, format: 'pem' });
    if (key.asymmetricKeyType !== 'ed25519') {
      throw new Error(`key type is ${key.asymmetricKeyType ?? 'unknown'}, want ed25519`);
    }
    const jwk = key.export({ format: 'jwk' });
    const seed = typeof jwk.d === 'string' ? fromBase64Url(jwk.d) : undefined;
    if (seed?.length !== 32) throw new Error('no 32-byte Ed25519 seed in the key');
    return identityFromSeed(seed);
  } catch (cause) {
    throw authError(role, 'key-file', {
      detail: `${path} is not an Ed25519 PKCS#8 PEM private key`,
      data: { path },
      cause,
    });
  }
}
