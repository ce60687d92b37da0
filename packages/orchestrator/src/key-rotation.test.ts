import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isConclaveError } from '@conclave/common';
import {
  PinSet, fingerprint, generateIdentity, identityToPem, loadIdentityFile, resolvePin, rotationStatementFromText,
} from '@conclave/protocol';
import type { Identity } from '@conclave/protocol';
import { KEY_ROTATIONS_FILE, MAX_KEY_ROTATIONS, readKeyRotations, rotateOrchestratorKey } from './key-rotation.js';

const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  return isConclaveError(err) ? err.code : `not a ConclaveError: ${String(err)}`;
}

describe('orchestrator key rotation on a data dir', () => {
  let dir: string;
  let original: Identity;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-key-rotation-'));
    original = generateIdentity();
    await writeFile(join(dir, 'orchestrator.key'), identityToPem(original), { mode: 0o600 });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('installs a new key, retires the old one and appends a statement a pinned node follows', async () => {
    const rotation = await rotateOrchestratorKey(dir, { now: () => 1_795_773_600_000 });
    const installed = await loadIdentityFile(join(dir, 'orchestrator.key'), 'orchestrator');
    expect(rotation.oldFingerprint).toBe(fingerprint(original.publicKey));
    expect(rotation.newFingerprint).toBe(fingerprint(installed.publicKey));
    expect(rotation.retiredPath).toBe(join(dir, 'orchestrator.key.1.retired'));
    expect(fingerprint((await loadIdentityFile(rotation.retiredPath, 'orchestrator')).publicKey)).toBe(rotation.oldFingerprint);
    for (const name of ['orchestrator.key', 'orchestrator.key.1.retired', KEY_ROTATIONS_FILE]) {
      expect(await modeOf(join(dir, name)), name).toBe(0o600);
    }

    const lines = (await readFile(join(dir, KEY_ROTATIONS_FILE), 'utf8')).split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe('');
    expect(rotationStatementFromText(lines[0] ?? '', 'orchestrator').issuedAtMs).toBe(1_795_773_600_000);
    const pins = new PinSet([rotation.oldFingerprint]);
    expect(resolvePin(pins, installed.publicKey, await readKeyRotations(dir))).toEqual({ added: [rotation.newFingerprint] });
  });

  it('chains successive rotations, numbering the retired keys', async () => {
    const first = await rotateOrchestratorKey(dir);
    // A hand-edited file without a final newline still gets one statement a line.
    const path = join(dir, KEY_ROTATIONS_FILE);
    await writeFile(path, `# rotated by hand\n${(await readFile(path, 'utf8')).trimEnd()}`);
    const second = await rotateOrchestratorKey(dir);
    expect(second.oldFingerprint).toBe(first.newFingerprint);
    expect(second.retiredPath).toBe(join(dir, 'orchestrator.key.2.retired'));
    const rotations = await readKeyRotations(dir);
    expect(rotations).toHaveLength(2);
    const installed = await loadIdentityFile(join(dir, 'orchestrator.key'), 'orchestrator');
    expect(resolvePin(new PinSet([first.oldFingerprint]), installed.publicKey, rotations)?.added).toEqual([
      first.newFingerprint, second.newFingerprint,
    ]);
  });

  it('refuses a data dir without a key (ORCH-AUTH-561) and never creates one', async () => {
    await rm(join(dir, 'orchestrator.key'));
    expect(await codeOf(rotateOrchestratorKey(dir))).toBe('ORCH-AUTH-561');
    await expect(stat(join(dir, 'orchestrator.key'))).rejects.toThrow(/ENOENT/);
  });

  it('refuses a bad rotations file (ORCH-AUTH-560) and leaves the key alone', async () => {
    await writeFile(join(dir, KEY_ROTATIONS_FILE), 'conclave-rotation:v1:AAAA\n');
    expect(await codeOf(readKeyRotations(dir))).toBe('ORCH-AUTH-560');
    expect(await codeOf(rotateOrchestratorKey(dir))).toBe('ORCH-AUTH-560');
    expect(fingerprint((await loadIdentityFile(join(dir, 'orchestrator.key'), 'orchestrator')).publicKey)).toBe(fingerprint(original.publicKey));
  });

  it(`stops at ${MAX_KEY_ROTATIONS} statements, the most a handshake carries`, async () => {
    for (let i = 0; i < MAX_KEY_ROTATIONS; i++) await rotateOrchestratorKey(dir);
    expect(await readKeyRotations(dir)).toHaveLength(MAX_KEY_ROTATIONS);
    expect(await codeOf(rotateOrchestratorKey(dir))).toBe('ORCH-AUTH-560');
  });

  it('reads no statements when the file is absent', async () => {
    expect(await readKeyRotations(dir)).toEqual([]);
  });
});
