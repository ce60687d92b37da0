import { captureLogger, ConclaveError } from '@conclave/common';
import { describe, expect, it } from 'vitest';
import { toHex } from './bytes.js';
import { nextEpochKey } from './key-schedule.js';
import { frameNonce, SealedChannel, type SealedChannelOptions, type SessionKeys } from './sealed-channel.js';
import { deterministicRandom, ManualClock } from './test-support.js';

function pair(label: string, options: SealedChannelOptions = {}, logger?: ReturnType<typeof captureLogger>) {
  const random = deterministicRandom(label);
  const n2o = random(32);
  const o2n = random(32);
  const base = { sessionId: toHex(random(16)), transcriptHash: random(64), peerPublicKey: random(32) };
  const nodeKeys: SessionKeys = { ...base, role: 'node', sendKey: n2o, receiveKey: o2n, peerId: 'SHA256:orch' };
  const orchKeys: SessionKeys = { ...base, role: 'orchestrator', sendKey: o2n, receiveKey: n2o, peerId: 'node-1' };
  return {
    node: new SealedChannel(nodeKeys, { ...options, ...(logger ? { logger: logger.logger } : {}) }),
    orchestrator: new SealedChannel(orchKeys, options),
  };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof ConclaveError ? err.code : `not coded: ${String(err)}`;
  }
  return undefined;
}

const text = (s: string) => new Uint8Array(Buffer.from(s));

describe('SealedChannel', () => {
  it('carries data both ways with a 25-byte overhead', () => {
    const { node, orchestrator } = pair('basic');
    const frame = node.seal(text('ping'));
    expect(frame.length).toBe(4 + 25);
    expect(orchestrator.open(frame)).toEqual({ kind: 'data', data: text('ping') });
    expect(node.open(orchestrator.seal(text('pong')))).toEqual({ kind: 'data', data: text('pong') });
  });

  it('refuses a replayed frame', () => {
    const { node, orchestrator } = pair('replay');
    const frame = node.seal(text('a'));
    orchestrator.open(frame);
    expect(codeOf(() => orchestrator.open(frame))).toBe('ORCH-AUTH-531');
    expect(orchestrator.state).toBe('failed');
  });

  it('refuses reordered frames', () => {
    const { node, orchestrator } = pair('reorder');
    node.seal(text('a'));
    const second = node.seal(text('b'));
    expect(codeOf(() => orchestrator.open(second))).toBe('ORCH-AUTH-531');
  });

  it('refuses the frame after a dropped one', () => {
    const { node, orchestrator } = pair('drop');
    orchestrator.open(node.seal(text('a')));
    node.seal(text('dropped'));
    expect(codeOf(() => orchestrator.open(node.seal(text('c'))))).toBe('ORCH-AUTH-531');
  });

  it('refuses a frame whose counter field was rewritten to the expected one', () => {
    const { node, orchestrator } = pair('counter-rewrite');
    node.seal(text('a'));
    const second = node.seal(text('b'));
    second[7] = 0;
    expect(codeOf(() => orchestrator.open(second))).toBe('ORCH-AUTH-530');
  });

  it('refuses a frame from another session', () => {
    const a = pair('session-a');
    const b = pair('session-b');
    expect(codeOf(() => b.orchestrator.open(a.node.seal(text('x'))))).toBe('ORCH-AUTH-530');
    expect(a.orchestrator.state).toBe('open');
  });

  it("refuses a node's own frame reflected back to it", () => {
    const { node } = pair('reflect');
    expect(codeOf(() => node.open(node.seal(text('x'))))).toBe('NODE-AUTH-530');
  });

  it('refuses every single flipped bit in ciphertext or tag', () => {
    const { node } = pair('flip');
    const frame = node.seal(text('flip me'));
    for (let byte = 8; byte < frame.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const receiver = pair('flip').orchestrator;
        const tampered = Uint8Array.from(frame);
        tampered[byte] = (tampered[byte] as number) ^ (1 << bit);
        expect(codeOf(() => receiver.open(tampered))).toBe('ORCH-AUTH-530');
      }
    }
  });

  it('survives fuzzed, truncated and oversized frames with coded errors only', () => {
    const random = deterministicRandom('fuzz-frames');
    const { node } = pair('fuzz', { maxPlaintextBytes: 1024 });
    const valid = node.seal(text('a valid frame to mutate'));
    const seen = new Set<string>();
    for (let i = 0; i < 2_000; i++) {
      const receiver = pair('fuzz', { maxPlaintextBytes: 1024 }).orchestrator;
      const r = random(4);
      let input: Uint8Array;
      switch (i % 4) {
        case 0: input = random((r[0] as number) % 64); break;
        case 1: input = valid.subarray(0, (r[0] as number) % valid.length); break;
        case 2: input = Uint8Array.from(valid); input[(r[0] as number) % valid.length]! ^= 1 + ((r[1] as number) % 255); break;
        default: input = random(1024 + 26 + ((r[0] as number) % 8)); break;
      }
      const code = codeOf(() => receiver.open(input));
      expect(code).toMatch(/^ORCH-AUTH-53[014]$/);
      seen.add(code as string);
    }
    expect([...seen].sort()).toEqual(['ORCH-AUTH-530', 'ORCH-AUTH-531', 'ORCH-AUTH-534']);
  });

  it('refuses to seal more than the plaintext limit but stays open', () => {
    const { node } = pair('big', { maxPlaintextBytes: 16 });
    expect(codeOf(() => node.seal(new Uint8Array(17)))).toBe('NODE-AUTH-534');
    expect(node.state).toBe('open');
  });

  it('rekeys after 10 minutes, and the receiver follows', () => {
    const clock = new ManualClock();
    const { node, orchestrator } = pair('time-rekey', { now: clock.now });
    orchestrator.open(node.seal(text('1')));
    clock.advance(10 * 60 * 1000);
    orchestrator.open(node.seal(text('2')));
    expect(node.epochs.send).toBe(1);
    expect(orchestrator.epochs.receive).toBe(1);
    expect(orchestrator.open(node.seal(text('3')))).toEqual({ kind: 'data', data: text('3') });
  });

  it('an explicit REKEY frame moves one direction to its next key', () => {
    const { node, orchestrator } = pair('explicit');
    expect(orchestrator.open(node.rekey())).toEqual({ kind: 'rekey' });
    expect(orchestrator.epochs).toEqual({ send: 0, receive: 1 });
    expect(orchestrator.open(node.seal(text('after')))).toEqual({ kind: 'data', data: text('after') });
  });

  it('property: at a counter limit it rekeys, and no (key, nonce) pair ever repeats', () => {
    for (let seed = 0; seed < 25; seed++) {
      const random = deterministicRandom(`property-${seed}`);
      const limit = 1 + ((random(1)[0] as number) % 7);
      const clock = new ManualClock();
      const { node, orchestrator } = pair(`prop-${seed}`, { maxFramesPerKey: limit, now: clock.now });
      const used = new Set<string>();
      // Follow the key by the spec's rule, independently of the channel's internals.
      let key = deterministicRandom(`prop-${seed}`)(32);
      let epoch = 0;
      let counter = 0;
      const frames = 50 + ((random(1)[0] as number) % 50);
      for (let i = 0; i < frames; i++) {
        const roll = random(1)[0] as number;
        if (roll % 13 === 0) clock.advance(11 * 60 * 1000);
        const frame = roll % 17 === 0 ? node.rekey() : node.seal(random(roll % 40));
        // Track the key the receiver must use, as the spec defines it, and the nonce.
        const pairId = `${toHex(key)}:${toHex(frameNonce(counter))}`;
        expect(used.has(pairId)).toBe(false);
        used.add(pairId);
        const opened = orchestrator.open(frame);
        expect(opened.kind === 'data' || opened.kind === 'rekey').toBe(true);
        expect(counter).toBeLessThan(limit);
        if (orchestrator.epochs.receive !== epoch) {
          epoch += 1;
          key = nextEpochKey(key);
          counter = 0;
        } else {
          counter += 1;
        }
      }
      expect(orchestrator.epochs.receive).toBeGreaterThanOrEqual(Math.floor(frames / limit));
    }
  });

  it('refuses a peer that keeps sending past the frame limit without rekeying', () => {
    const { node } = pair('lifetime', { maxFramesPerKey: 1_000 });
    const strict = pair('lifetime', { maxFramesPerKey: 3 }).orchestrator;
    strict.open(node.seal(text('0')));
    strict.open(node.seal(text('1')));
    strict.open(node.seal(text('2')));
    expect(codeOf(() => strict.open(node.seal(text('3'))))).toBe('ORCH-AUTH-532');
  });

  it('an orderly close frame closes both ends', () => {
    const { node, orchestrator } = pair('close');
    const frame = node.close();
    expect(node.state).toBe('closed');
    expect(orchestrator.open(frame!)).toEqual({ kind: 'close', detail: '' });
    expect(orchestrator.state).toBe('closed');
    expect(codeOf(() => orchestrator.seal(text('late')))).toBe('ORCH-AUTH-533');
    expect(node.close()).toBeUndefined();
  });

  it('a close frame naming a failure surfaces as the matching code on the other side', () => {
    const { node, orchestrator } = pair('close-error');
    const result = node.open(orchestrator.close('revoked', 'operator revoked the node')!);
    expect(result.kind).toBe('close');
    if (result.kind !== 'close') return;
    expect(result.failure).toBe('revoked');
    expect(result.error?.code).toBe('NODE-AUTH-512');
  });

  it('after a failure it can still tell the peer why, once', () => {
    const { node, orchestrator } = pair('fail-then-close');
    expect(codeOf(() => orchestrator.open(new Uint8Array(40)))).toBe('ORCH-AUTH-530');
    const frame = orchestrator.close('frame-auth');
    const read = node.open(frame!);
    expect(read.kind === 'close' && read.error?.code).toBe('NODE-AUTH-535');
    expect(orchestrator.close('frame-auth')).toBeUndefined();
  });

  it('logs a failure once, however often the dead channel is used', () => {
    const captured = captureLogger('NODE');
    const { node } = pair('log-once', {}, captured);
    expect(codeOf(() => node.open(new Uint8Array(3)))).toBe('NODE-AUTH-534');
    expect(codeOf(() => node.open(new Uint8Array(3)))).toBe('NODE-AUTH-533');
    expect(codeOf(() => node.seal(text('x')))).toBe('NODE-AUTH-533');
    expect(captured.lines.filter((line) => / NODE-AUTH-5\d\d /.test(line))).toHaveLength(1);
  });
});

