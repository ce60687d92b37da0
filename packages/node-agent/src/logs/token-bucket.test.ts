import { describe, expect, it } from 'vitest';
import { TokenBucket } from './token-bucket.js';

describe('TokenBucket', () => {
  it('passes a burst, then the sustained rate, and never more than the burst after a pause', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 3, () => now);
    const takeMany = (n: number) => Array.from({ length: n }, () => bucket.take()).filter(Boolean).length;
    expect(takeMany(5)).toBe(3);
    now += 100; // 10/s: one token
    expect(takeMany(5)).toBe(1);
    now += 50;
    expect(takeMany(1)).toBe(0);
    now += 60_000;
    expect(takeMany(10)).toBe(3);
  });
});
