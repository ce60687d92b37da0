import { constants as fsConstants } from 'node:fs';
import { link, open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ConclaveError } from '@conclave/common';
import {
  createRotationStatement, defaultRandom, fingerprint, generateIdentity, identityToPem, loadIdentityFile,
  rotationStatementFromText, rotationStatementToText, verifyRotationStatement,
} from '@conclave/protocol';
import type { Identity, RandomSource, RotationStatement } from '@conclave/protocol';

/** The orchestrator's key in its data dir (loadOrCreateIdentity's default for the orchestrator). */
export const ORCHESTRATOR_KEY_FILE = 'orchestrator.key';

/** Rotation statements the orchestrator serves in every handshake: text form, one a line. */
export const KEY_ROTATIONS_FILE = 'key-rotations';

/** Message 2 of the handshake carries at most 8 statements (MAX_ROTATIONS in the protocol package). */
export const MAX_KEY_ROTATIONS = 8;

const RETIRED_KEY = /^orchestrator\.key\.(\d+)\.retired$/;

/**
 * The statements in `<dataDir>/key-rotations`, oldest first; none when the file is absent.
 * Blank lines and `#` comments are skipped. A line that does not decode or whose signature does
 * not verify, or more than MAX_KEY_ROTATIONS statements, is ORCH-AUTH-560 naming the line: a file
 * the operator broke should stop the start, not silently lock out nodes that need the chain.
 */
export async function readKeyRotations(dataDir: string): Promise<RotationStatement[]> {
  const path = join(dataDir, KEY_ROTATIONS_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new ConclaveError('ORCH-AUTH-560', { detail: `cannot read ${path}: ${String(err)}`, data: { path }, cause: err });
  }
  const statements: RotationStatement[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let statement: RotationStatement;
    try {
      statement = rotationStatementFromText(line, 'orchestrator');
    } catch (cause) {
      throw new ConclaveError('ORCH-AUTH-560', { detail: `${path} line ${index + 1}: not a rotation statement`, data: { path, line: index + 1 }, cause });
    }
    if (!verifyRotationStatement(statement)) {
      throw new ConclaveError('ORCH-AUTH-560', {
        detail: `${path} line ${index + 1}: signature does not verify (${fingerprint(statement.oldPublicKey)} → ${fingerprint(statement.newPublicKey)})`,
        data: { path, line: index + 1 },
      });
    }
    statements.push(statement);
  }
  if (statements.length > MAX_KEY_ROTATIONS) {
    throw new ConclaveError('ORCH-AUTH-560', {
      detail: `${path} holds ${statements.length} statements; a handshake carries at most ${MAX_KEY_ROTATIONS}: delete the oldest lines`,
      data: { path, count: statements.length },
    });
  }
  return statements;
}

/** The current key of a data dir; ORCH-AUTH-561 when there is none (never creates one). */
export async function readOrchestratorKey(dataDir: string): Promise<{ identity: Identity; path: string }> {
  const path = join(dataDir, ORCHESTRATOR_KEY_FILE);
  try {
    return { identity: await loadIdentityFile(path, 'orchestrator'), path };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    throw new ConclaveError('ORCH-AUTH-561', { detail: `${path} does not exist`, data: { path }, cause: err });
  }
}

export interface RotateKeyOptions {
  /** Clock for the statement's issued_at. @default Date.now */
  now?: () => number;
  random?: RandomSource;
}

export interface KeyRotation {
  oldFingerprint: string;
  newFingerprint: string;
  /** Where the old key now lives. */
  retiredPath: string;
  rotationsPath: string;
  /** Statements in the rotations file, this one included. */
  rotations: number;
}

/**
 * Replaces `<dataDir>/orchestrator.key` with a new key and appends a statement signed by the old
 * one to `<dataDir>/key-rotations`. A running orchestrator keeps its key in memory: the new key
 * takes effect at its next start.
 *
 * Order, so that a crash at any step leaves a data dir that starts: (1) the new key goes to a
 * private temp file; (2) the statement is appended (a statement for a key never installed is
 * harmless: nodes already trust the old key); (3) the old key is hard-linked to
 * `orchestrator.key.<n>.retired`; (4) the temp file is renamed over `orchestrator.key`, atomically.
 */
export async function rotateOrchestratorKey(dataDir: string, options: RotateKeyOptions = {}): Promise<KeyRotation> {
  const { identity: oldIdentity, path: keyPath } = await readOrchestratorKey(dataDir);
  const existing = await readKeyRotations(dataDir);
  const rotationsPath = join(dataDir, KEY_ROTATIONS_FILE);
  if (existing.length >= MAX_KEY_ROTATIONS) {
    throw new ConclaveError('ORCH-AUTH-560', {
      detail: `${rotationsPath} already holds ${existing.length} statements, the most a handshake carries: delete the oldest lines first`,
      data: { path: rotationsPath, count: existing.length },
    });
  }
  const newIdentity = generateIdentity(options.random ?? defaultRandom);
  const statement = createRotationStatement(oldIdentity, newIdentity.publicKey, (options.now ?? Date.now)());

  const temp = `${keyPath}.${process.pid}.${Buffer.from(defaultRandom(4)).toString('hex')}.tmp`;
  await writePrivateFile(temp, identityToPem(newIdentity), fsConstants.O_CREAT | fsConstants.O_EXCL);
  try {
    await appendStatement(rotationsPath, rotationStatementToText(statement));
    const retiredPath = await retire(dataDir, keyPath);
    await rename(temp, keyPath);
    await syncDir(dataDir);
    return {
      oldFingerprint: fingerprint(oldIdentity.publicKey),
      newFingerprint: fingerprint(newIdentity.publicKey),
      retiredPath,
      rotationsPath,
      rotations: existing.length + 1,
    };
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

async function writePrivateFile(path: string, text: string, flags: number): Promise<void> {
  const handle = await open(path, fsConstants.O_WRONLY | flags, 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Appends one line, adding the newline a hand-edited file may lack; creates the file 0600. */
async function appendStatement(path: string, line: string): Promise<void> {
  const before = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  const separator = before === '' || before.endsWith('\n') ? '' : '\n';
  await writePrivateFile(path, `${separator}${line}\n`, fsConstants.O_CREAT | fsConstants.O_APPEND);
}

/** Hard-links the current key to the next free `orchestrator.key.<n>.retired` (same inode: mode 0600). */
async function retire(dataDir: string, keyPath: string): Promise<string> {
  const taken = (await readdir(dataDir)).map((name) => RETIRED_KEY.exec(name)?.[1]).filter((n) => n !== undefined).map(Number);
  for (let n = Math.max(0, ...taken) + 1; ; n++) {
    const retiredPath = join(dataDir, `${ORCHESTRATOR_KEY_FILE}.${n}.retired`);
    try {
      await link(keyPath, retiredPath);
      return retiredPath;
    } catch (err) {
      // Another rotation took this number between readdir and link.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

/** Makes the rename durable; some platforms cannot open a directory, and then this is best effort. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, fsConstants.O_RDONLY).catch(() => undefined);
  if (!handle) return;
  try {
    await handle.sync().catch(() => undefined);
  } finally {
    await handle.close();
  }
}
