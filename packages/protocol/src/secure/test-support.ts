import { createHash } from 'node:crypto';
import type { RandomSource } from './identity.js';

/**
 * A reproducible random source: SHA-512(label ‖ counter) blocks. For tests, the spec's vector
 * and benchmarks only; never for keys that protect anything.
 */
export function deterministicRandom(label: string): RandomSource {
  let counter = 0;
  return (length) => {
    const out = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const block = createHash('sha512').update(`${label}/${counter++}`).digest();
      const take = Math.min(block.length, length - filled);
      out.set(block.subarray(0, take), filled);
      filled += take;
    }
    return out;
  };
}

/** A clock tests move by hand. */
export class ManualClock {
  constructor(public nowMs = Date.UTC(2025, 0, 1)) {}
  readonly now = (): number => this.nowMs;
  advance(ms: number): void {
    this.nowMs += ms;
  }
}
