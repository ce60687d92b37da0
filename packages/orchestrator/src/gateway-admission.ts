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

/**
 * The source a peer counts against, for the handshake rate limit and the caps above: its IPv4
 * address, or its IPv6 /64 (one host is handed a whole /64, so counting single IPv6 addresses
 * would give one attacker billions of sources). grpc-js gives peers as `10.0.0.5:1234`,
 * `::1:1234` (no brackets), `[::1]:1234` or `::ffff:10.0.0.5:1234`.
 */
export function sourceOf(peer: string): string {
  const host = hostOf(peer);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped?.[1]) return mapped[1];
  if (!host.includes(':')) return host;
  const groups = expandIpv6(host);
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : host;
}

function hostOf(peer: string): string {
  const address = peer.replace(/^(ipv4|ipv6):/, '');
  const bracket = /^\[(.*)\](?::\d+)?$/.exec(address);
  if (bracket?.[1] !== undefined) return bracket[1];
  // grpc-js appends `:port` to every address, IPv6 ones without brackets.
  const colon = address.lastIndexOf(':');
  return colon > 0 && /^\d+$/.test(address.slice(colon + 1)) ? address.slice(0, colon) : address;
}

/** `2001:db8::1` → eight 4-digit groups; undefined when it is no IPv6 address. */
function expandIpv6(address: string): string[] | undefined {
  const [head = '', tail, extra] = address.toLowerCase().split('::');
  if (extra !== undefined) return undefined;
  const front = head ? head.split(':') : [];
  const back = tail ? tail.split(':') : [];
  const missing = 8 - front.length - back.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return undefined;
  const groups = [...front, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...back];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => g.padStart(4, '0'));
}
