import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConclaveError } from '@conclave/common';

/**
 * The API keys a server accepts. Keys are kept only as SHA-256 digests, so a
 * heap dump or a stray log of this object shows no key, and every comparison
 * is between equal-length digests in constant time.
 */
export class ApiKeys {
  private readonly digests: Buffer[];

  constructor(keys: Iterable<string>) {
    this.digests = [...new Set([...keys].map((k) => k.trim()).filter((k) => k.length > 0))].map(digest);
  }

  /** Keys from a comma- or newline-separated list (CONCLAVE_MODEL_API_KEYS). */
  static parse(list: string | undefined): string[] {
    return (list ?? '').split(/[,\n]/).map((k) => k.trim()).filter((k) => k.length > 0);
  }

  /** Keys from a file, one a line; `#` starts a comment. Throws MODEL-AUTH-502. */
  static readFile(path: string): string[] {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (cause) {
      throw new ConclaveError('MODEL-AUTH-502', { detail: path, data: { path }, cause });
    }
    return text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter((l) => l.length > 0);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  get count(): number {
    return this.digests.length;
  }

  /** Whether an `Authorization` header carries an accepted key; checks every key, never stopping early. */
  verify(authorization: string | undefined): boolean {
    if (!this.enabled) return true;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    const candidate = digest(match?.[1] ?? '');
    let ok = false;
    for (const d of this.digests) ok = timingSafeEqual(d, candidate) || ok;
    return ok && match !== null;
  }

  toJSON(): { keys: number } {
    return { keys: this.digests.length };
  }
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}
