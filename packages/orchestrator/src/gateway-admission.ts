import { ConclaveError } from '@conclave/common';

/**
 * Handshakes one source address may have open at once. A real node opens one; a site behind
 * NAT reconnecting after a restart opens a few at a time, and each finishes in milliseconds.
 */
export const MAX_UNAUTHENTICATED_STREAMS_PER_SOURCE = 8;

/** Handshakes the whole gateway may have open at once. */
export const MAX_UNAUTHENTICATED_STREAMS = 256;

/**
 * The largest gRPC message the gateway reads before the peer has authenticated. The largest
 * real handshake message is about 1.3 KB (a HELLO carrying a join token and a rotation chain);
 * the cap is checked against the message's length prefix, so a bigger one is refused before any
 * of it is buffered. With the counts above it bounds what strangers can make the orchestrator
 * hold: 8 × (16 KiB + one HTTP/2 window) per source, 256 × that in all.
 */
export const MAX_HANDSHAKE_MESSAGE_BYTES = 16 * 1024;

/**
 * Counts the gateway's unauthenticated streams per source and in all, so that strangers can
 * hold only a bounded share of the orchestrator's memory whatever they send. A stream is
 * admitted when it opens (before anything is read) and released once its peer has
 * authenticated, or when it ends.
 */
export class UnauthenticatedStreams {
  private readonly perSource = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly perSourceLimit = MAX_UNAUTHENTICATED_STREAMS_PER_SOURCE,
    private readonly totalLimit = MAX_UNAUTHENTICATED_STREAMS,
  ) {}

  /** Admits one stream from `source`, or throws ORCH-AUTH-570; the returned function releases it (once). */
  admit(source: string): () => void {
    const held = this.perSource.get(source) ?? 0;
    if (held >= this.perSourceLimit || this.total >= this.totalLimit) {
      throw new ConclaveError('ORCH-AUTH-570', {
        detail: held >= this.perSourceLimit
          ? `${held} handshakes open from ${source} (limit ${this.perSourceLimit})`
          : `${this.total} handshakes open in all (limit ${this.totalLimit})`,
        data: { source },
      });
    }
    this.perSource.set(source, held + 1);
    this.total += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total -= 1;
      const left = (this.perSource.get(source) ?? 1) - 1;
      if (left > 0) this.perSource.set(source, left);
      else this.perSource.delete(source);
    };
  }

  get open(): number {
    return this.total;
  }
}
