/** @default 20: a NAT'd site's boards share one address and all reconnect after a restart. */
export const DEFAULT_HANDSHAKE_BURST = 20;
/** @default 5 handshakes a second per source, sustained. */
export const DEFAULT_HANDSHAKE_REFILL_PER_SECOND = 5;
/** @default 10,000 sources remembered; the least recently seen is forgotten first. */
export const DEFAULT_HANDSHAKE_MAX_SOURCES = 10_000;

export interface HandshakeRateLimiterOptions {
  burst?: number;
  refillPerSecond?: number;
  maxSources?: number;
  now?: () => number;
}

export interface RateDecision {
  allowed: boolean;
  /** When a refused source may try again; 0 when allowed. */
  retryAfterMs: number;
  /** Refusals in a row for this source, this one included (0 when allowed); log only the first. */
  refusedInARow: number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
  refusedInARow: number;
}

/**
 * A token bucket per source address, checked before any public-key work so that a flood from
 * one source costs the orchestrator a Map lookup per attempt and leaves other sources untouched.
 */
export class HandshakeRateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #burst: number;
  readonly #refillPerMs: number;
  readonly #maxSources: number;
  readonly #now: () => number;

  constructor(options: HandshakeRateLimiterOptions = {}) {
    this.#burst = options.burst ?? DEFAULT_HANDSHAKE_BURST;
    this.#refillPerMs = (options.refillPerSecond ?? DEFAULT_HANDSHAKE_REFILL_PER_SECOND) / 1000;
    this.#maxSources = options.maxSources ?? DEFAULT_HANDSHAKE_MAX_SOURCES;
    this.#now = options.now ?? Date.now;
    if (this.#burst < 1 || this.#refillPerMs <= 0 || this.#maxSources < 1) {
      throw new RangeError('burst, refillPerSecond and maxSources must be positive');
    }
  }

  /** Takes one token from `source`'s bucket if it has one. */
  tryAcquire(source: string): RateDecision {
    const now = this.#now();
    const bucket = this.#buckets.get(source) ?? { tokens: this.#burst, updatedMs: now, refusedInARow: 0 };
    bucket.tokens = Math.min(this.#burst, bucket.tokens + Math.max(0, now - bucket.updatedMs) * this.#refillPerMs);
    bucket.updatedMs = now;
    // Re-insert so Map order is least-recently-seen first, which makes eviction O(1).
    this.#buckets.delete(source);
    this.#buckets.set(source, bucket);
    if (this.#buckets.size > this.#maxSources) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      bucket.refusedInARow = 0;
      return { allowed: true, retryAfterMs: 0, refusedInARow: 0 };
    }
    bucket.refusedInARow += 1;
    return {
      allowed: false,
      retryAfterMs: Math.ceil((1 - bucket.tokens) / this.#refillPerMs),
      refusedInARow: bucket.refusedInARow,
    };
  }

  /** Number of sources currently tracked. */
  get size(): number {
    return this.#buckets.size;
  }
}
