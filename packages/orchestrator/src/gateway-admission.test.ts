import { describe, expect, it } from 'vitest';
import { UnauthenticatedStreams, sourceOf } from './gateway-admission.js';

describe('sourceOf', () => {
  it('counts an IPv4 peer by its address and an IPv6 peer by its /64, however grpc-js spells it', () => {
    expect(sourceOf('10.0.0.5:1234')).toBe('10.0.0.5');
    expect(sourceOf('ipv4:10.0.0.5:1234')).toBe('10.0.0.5');
    expect(sourceOf('::ffff:10.0.0.5:1234')).toBe('10.0.0.5');
    expect(sourceOf('::1:5000')).toBe('0000:0000:0000:0000::/64');
    expect(sourceOf('[::1]:5000')).toBe('0000:0000:0000:0000::/64');
    // Two hosts of one /64 are one source; the next /64 is another.
    expect(sourceOf('2001:db8:0:1::5:40000')).toBe(sourceOf('2001:db8:0:1:ffff:1:2:3:40001'));
    expect(sourceOf('2001:db8:0:2::5:40000')).not.toBe(sourceOf('2001:db8:0:1::5:40000'));
  });
});

describe('UnauthenticatedStreams', () => {
  it('admits up to the per-source cap and the total cap; a release frees one slot, once', () => {
    const streams = new UnauthenticatedStreams(2, 3);
    const a1 = streams.admit('a');
    streams.admit('a');
    expect(() => streams.admit('a')).toThrow(expect.objectContaining({ code: 'ORCH-AUTH-570' }));
    streams.admit('b');
    expect(() => streams.admit('c')).toThrow(/3 handshakes open in all/);
    a1();
    a1();
    expect(streams.open).toBe(2);
    streams.admit('c');
    expect(() => streams.admit('c')).toThrow(expect.objectContaining({ code: 'ORCH-AUTH-570' }));
  });
});
