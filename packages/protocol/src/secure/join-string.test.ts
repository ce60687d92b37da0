import { ConclaveError } from '@conclave/common/core';
import { describe, expect, it } from 'vitest';
import { fingerprint, identityFromSeed } from './identity.js';
import { decodeJoinString, encodeJoinString, generateJoinToken, hashToken, tokenMatchesHash } from './join-string.js';

const fp = fingerprint(identityFromSeed(new Uint8Array(32).fill(3)).publicKey);

describe('join strings', () => {
  it.each(['orch.example.com:7400', '10.0.0.2:7400', '[::1]:7400', '[2001:db8::7]:65535'])(
    'round-trips address %s',
    (address) => {
      const token = generateJoinToken();
      const text = encodeJoinString({ address, token, fingerprint: fp });
      expect(text.startsWith('conclave-join:v1:')).toBe(true);
      expect(decodeJoinString(text)).toEqual({ address, token, fingerprint: fp });
    },
  );

  it.each([
    ['wrong prefix', (s: string) => s.replace('conclave-join:v1', 'conclave-join:v2')],
    ['short token', (s: string) => s.replace(/:([A-Za-z0-9_-]{43}):SHA256/, ':abc:SHA256')],
    ['bad fingerprint', (s: string) => s.slice(0, -2)],
    ['no port', (s: string) => s.replace('orch.example.com:7400', 'orch.example.com')],
    ['port 0', (s: string) => s.replace(':7400', ':0')],
    ['padding in token', (s: string) => s.replace(/:([A-Za-z0-9_-]{43}):SHA256/, ':$1=:SHA256')],
  ])('refuses a join string with %s as NODE-AUTH-540', (_name, mutate) => {
    const good = encodeJoinString({ address: 'orch.example.com:7400', token: generateJoinToken(), fingerprint: fp });
    let code: string | undefined;
    try {
      decodeJoinString(mutate(good));
    } catch (err) {
      code = err instanceof ConclaveError ? err.code : String(err);
    }
    expect(code).toBe('NODE-AUTH-540');
  });

  it('carries an optional TLS certificate fingerprint, and old strings without one still parse', () => {
    const token = generateJoinToken();
    const tlsFingerprint = fingerprint(identityFromSeed(new Uint8Array(32).fill(9)).publicKey);
    for (const address of ['orch.example.com:7400', '[::1]:7400']) {
      const text = encodeJoinString({ address, token, fingerprint: fp, tlsFingerprint });
      expect(text).toBe(`conclave-join:v1:${address}:${Buffer.from(token).toString('base64url')}:${fp}:TLS:${tlsFingerprint.slice('SHA256:'.length)}`);
      expect(decodeJoinString(text)).toEqual({ address, token, fingerprint: fp, tlsFingerprint });
    }
    const old = `conclave-join:v1:10.0.0.2:7400:${Buffer.from(token).toString('base64url')}:${fp}`;
    expect(decodeJoinString(old)).toEqual({ address: '10.0.0.2:7400', token, fingerprint: fp });
    expect(encodeJoinString({ address: '10.0.0.2:7400', token, fingerprint: fp })).toBe(old);
    const bad = (mutate: (s: string) => string): string | undefined => {
      try {
        decodeJoinString(mutate(encodeJoinString({ address: '10.0.0.2:7400', token, fingerprint: fp, tlsFingerprint })));
        return undefined;
      } catch (err) {
        return err instanceof ConclaveError ? `${err.code} ${err.detail ?? ''}` : String(err);
      }
    };
    expect(bad((s) => s.slice(0, -2))).toBe('NODE-AUTH-540 bad TLS certificate fingerprint');
    expect(bad((s) => s.replace(':TLS:', ':TLX:'))).toMatch(/^NODE-AUTH-540 /);
    expect(() => encodeJoinString({ address: '10.0.0.2:7400', token, fingerprint: fp, tlsFingerprint: 'SHA256:short' })).toThrow(/bad TLS certificate fingerprint/);
  });

  it('stores only a hash and compares it in constant time', () => {
    const token = generateJoinToken();
    const hash = hashToken(token);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenMatchesHash(token, hash)).toBe(true);
    expect(tokenMatchesHash(generateJoinToken(), hash)).toBe(false);
    expect(tokenMatchesHash(token, 'zz')).toBe(false);
  });
});
