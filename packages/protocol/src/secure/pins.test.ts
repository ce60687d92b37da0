import { ConclaveError } from '@conclave/common/core';
import { describe, expect, it } from 'vitest';
import { fingerprint, identityFromSeed } from './identity.js';
import {
  createRotationStatement,
  decodeRotationStatement,
  encodeRotationStatement,
  PinSet,
  resolvePin,
  rotationStatementFromText,
  rotationStatementToText,
  verifyRotationStatement,
} from './pins.js';

const key = (n: number) => identityFromSeed(new Uint8Array(32).fill(n));

describe('PinSet and rotation statements', () => {
  it('round-trips through its text form and refuses garbage', () => {
    const pins = new PinSet([fingerprint(key(1).publicKey), fingerprint(key(2).publicKey)]);
    expect(PinSet.parse(`# pinned\n${pins.toText()}\n`).list()).toEqual(pins.list());
    expect(() => PinSet.parse('SHA256:nope')).toThrow(ConclaveError);
  });

  it('follows a chain of rotations, in any order, from a pinned key', () => {
    const [k1, k2, k3] = [key(1), key(2), key(3)];
    const pins = new PinSet([fingerprint(k1.publicKey)]);
    const r12 = createRotationStatement(k1, k2.publicKey, 1);
    const r23 = createRotationStatement(k2, k3.publicKey, 2);
    expect(resolvePin(pins, k3.publicKey, [r23, r12])?.added).toEqual([
      fingerprint(k2.publicKey),
      fingerprint(k3.publicKey),
    ]);
    expect(pins.trusts(k3.publicKey)).toBe(true);
  });

  it('ignores a tampered statement', () => {
    const [k1, k2] = [key(1), key(2)];
    const statement = createRotationStatement(k1, k2.publicKey, 1);
    const tampered = { ...statement, issuedAtMs: 2 };
    expect(verifyRotationStatement(tampered)).toBe(false);
    expect(resolvePin(new PinSet([fingerprint(k1.publicKey)]), k2.publicKey, [tampered])).toBeUndefined();
  });

  it('encodes to 141 bytes and a conclave-rotation:v1 string', () => {
    const statement = createRotationStatement(key(1), key(2).publicKey, 1_700_000_000_000);
    const bytes = encodeRotationStatement(statement);
    expect(bytes.length).toBe(141);
    expect(decodeRotationStatement(bytes, 'node')).toEqual(statement);
    expect(rotationStatementFromText(rotationStatementToText(statement), 'orchestrator')).toEqual(statement);
    expect(() => decodeRotationStatement(bytes.subarray(1), 'node')).toThrow(/rotation statement/);
  });
});
