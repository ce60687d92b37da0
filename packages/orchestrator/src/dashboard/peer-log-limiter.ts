export interface PeerLogLimiterOptions {
  /** One line per peer address this often at most. @default 60_000 */
  intervalMs?: number;
  /** Addresses remembered at most; past that the one logged longest ago is forgotten. @default 1_000 */
  maxPeers?: number;
  now?: () => number;
}

/**
 * Which lines about a peer are logged: the first, then at most one per address per interval,
 * each carrying how many were held back since the last (`suppressed`). A refused request costs
 * a stranger one packet; unlimited, each would be a record in the fleet log store and its files.
 * A forgotten address logs again at its next line, so the memory is bounded and the log is
 * bounded by `maxPeers` lines per interval from addresses that keep coming.
 */
export class PeerLogLimiter {
  /** In the order of each address's last line: the first is the one logged longest ago. */
  private readonly peers = new Map<string, { loggedAtMs: number; suppressed: number }>();
  private readonly intervalMs: number;
  private readonly maxPeers: number;
  private readonly now: () => number;

  constructor(options: PeerLogLimiterOptions = {}) {
    this.intervalMs = options.intervalMs ?? 60_000;
    this.maxPeers = options.maxPeers ?? 1_000;
    this.now = options.now ?? Date.now;
  }

  /** Lines remembered, for tests. */
  get size(): number {
    return this.peers.size;
  }

  /** `{ suppressed }` when a line about `address` is to be logged now, else undefined (and counted). */
  admit(address: string): { suppressed: number } | undefined {
    const nowMs = this.now();
    const seen = this.peers.get(address);
    if (seen && nowMs - seen.loggedAtMs < this.intervalMs) {
      seen.suppressed += 1;
      return undefined;
    }
    this.peers.delete(address);
    this.peers.set(address, { loggedAtMs: nowMs, suppressed: 0 });
    if (this.peers.size > this.maxPeers) {
      const oldest = this.peers.keys().next();
      if (!oldest.done) this.peers.delete(oldest.value);
    }
    return { suppressed: seen?.suppressed ?? 0 };
  }
}
