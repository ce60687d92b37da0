import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiKeys } from './api-keys.js';

describe('ApiKeys', () => {
  it('accepts only a listed bearer key', () => {
    const keys = new ApiKeys(ApiKeys.parse('alpha, beta'));
    expect(keys.verify('Bearer alpha')).toBe(true);
    expect(keys.verify('bearer beta')).toBe(true);
    expect(keys.verify('Bearer gamma')).toBe(false);
    expect(keys.verify('alpha')).toBe(false);
    expect(keys.verify(undefined)).toBe(false);
  });

  it('is open when no key is configured', () => {
    expect(new ApiKeys([]).verify(undefined)).toBe(true);
  });

  it('reads a key file with comments and never shows a key when serialized', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keys-'));
    writeFileSync(join(dir, 'keys'), '# ops\nsecret-one\n\nsecret-two # laptop\n');
    const keys = new ApiKeys(ApiKeys.readFile(join(dir, 'keys')));
    expect(keys.count).toBe(2);
    expect(keys.verify('Bearer secret-two')).toBe(true);
    expect(JSON.stringify(keys)).not.toContain('secret');
    expect(() => ApiKeys.readFile(join(dir, 'missing'))).toThrow(/API key file/);
  });
});
