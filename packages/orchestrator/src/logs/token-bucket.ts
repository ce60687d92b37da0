/**
 * A token bucket: `ratePerSecond` tokens a second, at most `burst` saved up. Time is read on
 * each take, so an idle bucket costs nothing.
 */
export class TokenBucket {
  private tokens: number;
  private refilledAtMs: number;

  constructor(private readonly ratePerSecond: number, private readonly burst: number, private readonly now: () => number = Date.now) {
    this.tokens = burst;
    this.refilledAtMs = now();
  }

  /** Takes one token; false when there is none. */
  take(): boolean {
    const nowMs = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.refilledAtMs) / 1000) * this.ratePerSecond);
    this.refilledAtMs = nowMs;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
