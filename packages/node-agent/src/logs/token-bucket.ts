/**
 * A token bucket: `burst` tokens at most, refilled at `ratePerSecond`. Each `take()` that
 * finds a whole token spends it. Time comes from a monotonic clock, so a wall-clock step
 * neither floods nor starves the bucket.
 */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.lastMs = nowMs();
  }

  /** Spends one token if there is one. */
  take(): boolean {
    const now = this.nowMs();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.lastMs) * this.ratePerSecond) / 1000);
    this.lastMs = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
