import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConclaveError } from '@conclave/common';
import { REDIS_PASSWORD_FILE, loadOrCreateRedisPassword } from './redis-connection.js';

const dirs: string[] = [];

function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'conclave-redis-pw-'));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('loadOrCreateRedisPassword', () => {
  it('creates a random 0600 password once and reads the same one back', () => {
    const dir = freshDir();
    const password = loadOrCreateRedisPassword(dir);
    expect(password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const path = join(dir, REDIS_PASSWORD_FILE);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toBe(`${password}\n`);
    expect(loadOrCreateRedisPassword(dir)).toBe(password);
    expect(loadOrCreateRedisPassword(freshDir())).not.toBe(password);
  });

  it('refuses a file others may read, or one that holds no password, with ORCH-AUTH-562', () => {
    const dir = freshDir();
    loadOrCreateRedisPassword(dir);
    const path = join(dir, REDIS_PASSWORD_FILE);
    chmodSync(path, 0o644);
    const wide = errorOf(() => loadOrCreateRedisPassword(dir));
    expect(wide).toBeInstanceOf(ConclaveError);
    expect((wide as ConclaveError).code).toBe('ORCH-AUTH-562');
    expect((wide as ConclaveError).message).toContain('0644');
    writeFileSync(path, 'short\n', { mode: 0o600 });
    chmodSync(path, 0o600);
    const malformed = errorOf(() => loadOrCreateRedisPassword(dir));
    expect((malformed as ConclaveError).code).toBe('ORCH-AUTH-562');
    expect((malformed as ConclaveError).message).not.toContain('short');
  });
});
