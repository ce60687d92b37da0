import { authError, type Role } from './auth-failure.js';
import { concatBytes, fromBase64Url, readU64be, toBase64Url, u64be, utf8 } from './bytes.js';
import { defaultCryptoProvider, type CryptoProvider } from './crypto-provider.js';
import { fingerprint, parseFingerprint, type Identity } from './identity.js';
import { verifySignature } from './safe-primitives.js';

/**
 * The orchestrator fingerprints a node trusts. More than one, so the orchestrator key can be
 * rotated: a rotation statement signed by a pinned key adds the new key's pin.
 */
export class PinSet {
  readonly #pins = new Set<string>();

  /** Throws NODE-AUTH-542 for a malformed fingerprint. */
  constructor(fingerprints: Iterable<string> = []) {
    for (const fp of fingerprints) this.add(fp);
  }

  /** Adds a pin (`SHA256:…`); returns false when it was already present. */
  add(fp: string): boolean {
    const parsed = parseFingerprint(fp);
    if (!parsed) throw authError('node', 'pins-file', { detail: `not a fingerprint: ${JSON.stringify(fp)}` });
    if (this.#pins.has(parsed)) return false;
    this.#pins.add(parsed);
    return true;
  }

  /** Whether the key's fingerprint is pinned. Fingerprints are public, so a Set lookup leaks nothing. */
  trusts(publicKey: Uint8Array): boolean {
    return this.#pins.has(fingerprint(publicKey));
  }

  list(): string[] {
    return [...this.#pins];
  }

  get size(): number {
    return this.#pins.size;
  }

  /** One fingerprint a line; the node agent keeps this file in its data dir. */
  toText(): string {
    return this.list().map((fp) => `${fp}\n`).join('');
  }

  /** Parses `toText()` output; blank lines and `#` comments are skipped. */
  static parse(text: string): PinSet {
    const lines = text.split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
    return new PinSet(lines);
  }
}

/** "The key `oldPublicKey` vouches for `newPublicKey` from `issuedAtMs` on", signed by the old key. */
export interface RotationStatement {
  readonly oldPublicKey: Uint8Array;
  readonly newPublicKey: Uint8Array;
  readonly issuedAtMs: number;
  readonly signature: Uint8Array;
}

const ROTATION_MAGIC = utf8('CNRT');
const ROTATION_VERSION = 1;
const ROTATION_DOMAIN = utf8('conclave/v1 key-rotation');
/** magic 4 ‖ version 1 ‖ old 32 ‖ new 32 ‖ issued_at 8 ‖ signature 64. */
export const ROTATION_STATEMENT_BYTES = 141;

function rotationSignedBytes(oldPublicKey: Uint8Array, newPublicKey: Uint8Array, issuedAtMs: number): Uint8Array {
  return concatBytes(ROTATION_DOMAIN, oldPublicKey, newPublicKey, u64be(BigInt(issuedAtMs)));
}

/** Signs a rotation with the old key; the orchestrator then serves it in every handshake. */
export function createRotationStatement(
  oldIdentity: Identity,
  newPublicKey: Uint8Array,
  issuedAtMs: number,
  provider: CryptoProvider = defaultCryptoProvider,
): RotationStatement {
  const message = rotationSignedBytes(oldIdentity.publicKey, newPublicKey, issuedAtMs);
  return {
    oldPublicKey: oldIdentity.publicKey,
    newPublicKey,
    issuedAtMs,
    signature: provider.sign(message, oldIdentity.seed, oldIdentity.publicKey),
  };
}

export function verifyRotationStatement(
  statement: RotationStatement,
  provider: CryptoProvider = defaultCryptoProvider,
): boolean {
  const message = rotationSignedBytes(statement.oldPublicKey, statement.newPublicKey, statement.issuedAtMs);
  return verifySignature(provider, message, statement.signature, statement.oldPublicKey);
}

export function encodeRotationStatement(statement: RotationStatement): Uint8Array {
  return concatBytes(
    ROTATION_MAGIC,
    Uint8Array.of(ROTATION_VERSION),
    statement.oldPublicKey,
    statement.newPublicKey,
    u64be(BigInt(statement.issuedAtMs)),
    statement.signature,
  );
}

/** Decodes the binary form; throws `<role>-AUTH-541` when the layout is wrong (not the signature). */
export function decodeRotationStatement(bytes: Uint8Array, role: Role): RotationStatement {
  if (bytes.length !== ROTATION_STATEMENT_BYTES || bytes[4] !== ROTATION_VERSION) {
    throw authError(role, 'rotation', { detail: 'bad length or version' });
  }
  for (let i = 0; i < ROTATION_MAGIC.length; i++) {
    if (bytes[i] !== ROTATION_MAGIC[i]) throw authError(role, 'rotation', { detail: 'bad magic' });
  }
  const issuedAt = readU64be(bytes, 69);
  if (issuedAt > BigInt(Number.MAX_SAFE_INTEGER)) throw authError(role, 'rotation', { detail: 'bad timestamp' });
  return {
    oldPublicKey: bytes.slice(5, 37),
    newPublicKey: bytes.slice(37, 69),
    issuedAtMs: Number(issuedAt),
    signature: bytes.slice(77, 141),
  };
}

/** Text form for files and the CLI: `conclave-rotation:v1:<base64url>`. */
export function rotationStatementToText(statement: RotationStatement): string {
  return `conclave-rotation:v1:${toBase64Url(encodeRotationStatement(statement))}`;
}

export function rotationStatementFromText(text: string, role: Role): RotationStatement {
  const prefix = 'conclave-rotation:v1:';
  const bytes = text.startsWith(prefix) ? fromBase64Url(text.trim().slice(prefix.length)) : undefined;
  if (!bytes) throw authError(role, 'rotation', { detail: 'not a conclave-rotation:v1 string' });
  return decodeRotationStatement(bytes, role);
}

export interface PinResolution {
  /** Fingerprints added to the set by valid rotation statements, oldest first. */
  added: string[];
}

/**
 * Decides whether `publicKey` is trusted, following rotation statements from a pinned key to it.
 * Adds the pins of every key reached; returns undefined when the key stays untrusted. Statements
 * that do not verify are ignored rather than fatal, so a stale extra statement cannot lock nodes out.
 */
export function resolvePin(
  pins: PinSet,
  publicKey: Uint8Array,
  rotations: readonly RotationStatement[],
  provider: CryptoProvider = defaultCryptoProvider,
): PinResolution | undefined {
  const added: string[] = [];
  // Each pass adopts every statement whose old key is now trusted; chains of any order resolve.
  let progress = true;
  while (!pins.trusts(publicKey) && progress) {
    progress = false;
    for (const statement of rotations) {
      if (!pins.trusts(statement.oldPublicKey) || pins.trusts(statement.newPublicKey)) continue;
      if (!verifyRotationStatement(statement, provider)) continue;
      const fp = fingerprint(statement.newPublicKey);
      pins.add(fp);
      added.push(fp);
      progress = true;
    }
  }
  return pins.trusts(publicKey) ? { added } : undefined;
}
