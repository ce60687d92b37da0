/** How many recent runs the median is taken over: enough to be steady, small enough to follow a change. */
const WINDOW = 128;

/** Runs, errors and the median latency of one model on one node, for heartbeats. */
export class RunStats {
  private readonly recentMs: number[] = [];
  private next = 0;
  runs = 0;
  errors = 0;

  record(ms: number): void {
    this.runs++;
    if (this.recentMs.length < WINDOW) this.recentMs.push(ms);
    else this.recentMs[this.next] = ms;
    this.next = (this.next + 1) % WINDOW;
  }

  recordError(): void {
    this.errors++;
  }

  /** The median of the last runs; 0 before the first. */
  p50Ms(): number {
    if (this.recentMs.length === 0) return 0;
    const sorted = [...this.recentMs].sort((a, b) => a - b);
    return sorted[Math.floor((sorted.length - 1) / 2)]!;
  }
}
