import { describe, expect, it } from 'vitest';
import { PeerLogLimiter } from './peer-log-limiter.js';

describe('PeerLogLimiter', () => {
  it('admits one line per address per interval, the next with the count held back', () => {
    let nowMs = 0;
    const limiter = new PeerLogLimiter({ intervalMs: 60_000, now: () => nowMs });
    expect(limiter.admit('10.0.0.1')).toEqual({ suppressed: 0 });
    expect(limiter.admit('10.0.0.1')).toBeUndefined();
    expect(limiter.admit('10.0.0.2')).toEqual({ suppressed: 0 });
    nowMs = 59_999;
    expect(limiter.admit('10.0.0.1')).toBeUndefined();
    nowMs = 60_000;
    expect(limiter.admit('10.0.0.1')).toEqual({ suppressed: 2 });
    expect(limiter.admit('10.0.0.1')).toBeUndefined();
    nowMs = 200_000;
    expect(limiter.admit('10.0.0.1')).toEqual({ suppressed: 1 });
    expect(limiter.admit('10.0.0.2')).toEqual({ suppressed: 0 });
  });

  it('remembers at most maxPeers addresses, forgetting the one logged longest ago', () => {
    let nowMs = 0;
    const limiter = new PeerLogLimiter({ intervalMs: 60_000, maxPeers: 3, now: () => nowMs });
    for (const address of ['a', 'b', 'c']) {
      limiter.admit(address);
      nowMs += 1;
    }
    // a's line is re-admitted only after its interval, so a held-back line does not refresh it.
    expect(limiter.admit('a')).toBeUndefined();
    expect(limiter.admit('d')).toEqual({ suppressed: 0 });
    expect(limiter.size).toBe(3);
    // a was forgotten (with its held-back count), b and c were not.
    expect(limiter.admit('a')).toEqual({ suppressed: 0 });
    expect(limiter.admit('c')).toBeUndefined();
    expect(limiter.size).toBe(3);
    for (let i = 0; i < 10_000; i++) limiter.admit(`x${i}`);
    expect(limiter.size).toBe(3);
  });
});
