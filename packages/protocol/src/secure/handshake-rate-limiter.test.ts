import { describe, expect, it } from 'vitest';
import { HandshakeRateLimiter } from './handshake-rate-limiter.js';
import { ManualClock } from './test-support.js';

describe('HandshakeRateLimiter', () => {
  it('allows a burst, then refills at its rate, per source', () => {
    const clock = new ManualClock();
    const limiter = new HandshakeRateLimiter({ burst: 3, refillPerSecond: 2, now: clock.now });
    expect([1, 2, 3, 4].map(() => limiter.tryAcquire('a').allowed)).toEqual([true, true, true, false]);
    expect(limiter.tryAcquire('a')).toEqual({ allowed: false, retryAfterMs: 500, refusedInARow: 2 });
    expect(limiter.tryAcquire('b').allowed).toBe(true);
    clock.advance(500);
    expect(limiter.tryAcquire('a').allowed).toBe(true);
    expect(limiter.tryAcquire('a').allowed).toBe(false);
  });

  it('forgets the least recently seen source beyond maxSources', () => {
    const clock = new ManualClock();
    const limiter = new HandshakeRateLimiter({ burst: 1, refillPerSecond: 1, maxSources: 2, now: clock.now });
    limiter.tryAcquire('a');
    limiter.tryAcquire('b');
    limiter.tryAcquire('c');
    expect(limiter.size).toBe(2);
    expect(limiter.tryAcquire('b').allowed).toBe(false);
  });
});
