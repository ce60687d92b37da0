import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConclaveError } from '@conclave/common/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  fingerprint,
  identityFromSeed,
  loadOrCreateIdentity,
  nodeIdFromPublicKey,
  parseFingerprint,
} from './identity.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'conclave-identity-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return err instanceof ConclaveError ? err.code : String(err);
  }
  return undefined;
}

describe('identity files', () => {
  it('creates a 0600 PKCS#8 key on first start and loads the same key afterwards', async () => {
    const first = await loadOrCreateIdentity(join(dir, 'data'), { role: 'node' });
    expect(first.created).toBe(true);
    expect((await stat(first.path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'data'))).mode & 0o777).toBe(0o700);
    expect(await readFile(first.path, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const second = await loadOrCreateIdentity(join(dir, 'data'), { role: 'node' });
    expect(second.created).toBe(false);
    expect(second.identity.publicKey).toEqual(first.identity.publicKey);
  });

  it('two processes racing on first start end with one key', async () => {
    const [a, b] = await Promise.all([
      loadOrCreateIdentity(dir, { role: 'orchestrator' }),
      loadOrCreateIdentity(dir, { role: 'orchestrator' }),
    ]);
    expect(a.identity.publicKey).toEqual(b.identity.publicKey);
  });

  it.each([
    ['node', 0o640, 'NODE-AUTH-520'],
    ['node', 0o604, 'NODE-AUTH-520'],
    ['orchestrator', 0o644, 'ORCH-AUTH-520'],
  ] as const)('refuses a %s key file with mode %o', async (role, mode, code) => {
    const { path } = await loadOrCreateIdentity(dir, { role });
    await chmod(path, mode);
    expect(await codeOf(loadOrCreateIdentity(dir, { role }))).toBe(code);
  });

  it('refuses a malformed key file', async () => {
    await writeFile(join(dir, 'node.key'), 'not a key', { mode: 0o600 });
    expect(await codeOf(loadOrCreateIdentity(dir, { role: 'node' }))).toBe('NODE-AUTH-521');
  });
});

describe('node ids and fingerprints', () => {
  const identity = identityFromSeed(new Uint8Array(32).fill(7));

  it('derives a 32-hex-character node id from the public key only', () => {
    const nodeId = nodeIdFromPublicKey(identity.publicKey);
    expect(nodeId).toMatch(/^[0-9a-f]{32}$/);
    expect(nodeIdFromPublicKey(identityFromSeed(new Uint8Array(32).fill(8)).publicKey)).not.toBe(nodeId);
  });

  it('formats fingerprints as SHA256:<base64url> and parses them back', () => {
    const fp = fingerprint(identity.publicKey);
    expect(fp).toMatch(/^SHA256:[A-Za-z0-9_-]{43}$/);
    expect(parseFingerprint(fp)).toBe(fp);
    expect(parseFingerprint(fp.slice(7))).toBe(fp);
    expect(parseFingerprint('SHA256:short')).toBeUndefined();
    expect(parseFingerprint(`${fp}=`)).toBeUndefined();
  });
});
