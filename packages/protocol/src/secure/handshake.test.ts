import { captureLogger, ConclaveError } from '@conclave/common';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { concatBytes } from './bytes.js';
import { nodeCryptoProvider, tweetnaclProvider, type CryptoProvider } from './crypto-provider.js';
import { MemoryEnrollment } from './enrollment.js';
import { createInitiator, createResponder, type InitiatorOptions, type ResponderOptions } from './handshake.js';
import { encodeReject } from './handshake-messages.js';
import { HandshakeRateLimiter } from './handshake-rate-limiter.js';
import { fingerprint, identityFromSeed, nodeIdFromPublicKey, type Identity } from './identity.js';
import { runHandshakeInMemory } from './in-memory-handshake.js';
import { generateJoinToken } from './join-string.js';
import { createRotationStatement, PinSet } from './pins.js';
import { deterministicRandom, ManualClock } from './test-support.js';

const ORDER_L = (1n << 252n) + 27742317777372353535851937790883648493n;

/** Adds L to the S half of a signature: still valid for tweetnacl, a different byte string. */
function malleate(signature: Uint8Array): Uint8Array {
  let s = 0n;
  for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(signature[32 + i] as number);
  s += ORDER_L;
  const out = Uint8Array.from(signature);
  for (let i = 0; i < 32; i++) {
    out[32 + i] = Number(s & 0xffn);
    s >>= 8n;
  }
  return out;
}

const malleatingProvider: CryptoProvider = {
  ...tweetnaclProvider,
  sign: (message, seed, publicKey) => malleate(tweetnaclProvider.sign(message, seed, publicKey)),
};

function id(label: string): Identity {
  return identityFromSeed(deterministicRandom(label)(32));
}

function setup(options: { approval?: 'auto' | 'manual' } = {}) {
  const clock = new ManualClock();
  const orchestrator = id('orchestrator');
  const node = id('node');
  const registry = new MemoryEnrollment({ approval: options.approval ?? 'auto', now: clock.now });
  const pins = () => new PinSet([fingerprint(orchestrator.publicKey)]);
  const initiator = (extra: Partial<InitiatorOptions> = {}) =>
    createInitiator({ identity: node, pins: pins(), now: clock.now, ...extra });
  const responder = (extra: Partial<ResponderOptions> = {}) =>
    createResponder({ identity: orchestrator, hooks: registry, now: clock.now, ...extra });
  const accept = (identity: Identity = node) => registry.setStatus(nodeIdFromPublicKey(identity.publicKey), 'accepted', identity.publicKey);
  return { clock, orchestrator, node, registry, initiator, responder, accept };
}

function codeOf(err: unknown): string | undefined {
  return err instanceof ConclaveError ? err.code : undefined;
}

describe('handshake: the happy paths', () => {
  it('an accepted node gets mirrored directional keys and both channels talk', async () => {
    const t = setup();
    t.accept();
    const run = await runHandshakeInMemory(t.initiator(), t.responder());
    const node = run.node.done!;
    const orch = run.orchestrator.done!;
    expect(node.sessionId).toBe(orch.sessionId);
    expect(node.sendKey).toEqual(orch.receiveKey);
    expect(node.receiveKey).toEqual(orch.sendKey);
    expect(node.sendKey).not.toEqual(node.receiveKey);
    expect(orch.peerId).toBe(nodeIdFromPublicKey(t.node.publicKey));
    expect(node.peerId).toBe(fingerprint(t.orchestrator.publicKey));
    expect(run.messages.map((m) => m.length)).toEqual([48, 161, 121]);
    const { node: a, orchestrator: b } = run.channels!;
    expect(b.open(a.seal(Buffer.from('hello')))).toEqual({ kind: 'data', data: new Uint8Array(Buffer.from('hello')) });
    expect(a.open(b.seal(Buffer.from('world')))).toEqual({ kind: 'data', data: new Uint8Array(Buffer.from('world')) });
  });

  it.each([
    ['tweetnacl', 'tweetnacl', tweetnaclProvider, tweetnaclProvider],
    ['tweetnacl', 'node', tweetnaclProvider, nodeCryptoProvider],
    ['node', 'tweetnacl', nodeCryptoProvider, tweetnaclProvider],
  ])('node on %s and orchestrator on %s agree on the wire', async (_a, _b, nodeProvider, orchProvider) => {
    const t = setup();
    t.accept();
    const run = await runHandshakeInMemory(t.initiator({ provider: nodeProvider }), t.responder({ provider: orchProvider }));
    expect(run.node.done?.sessionId).toBe(run.orchestrator.done?.sessionId);
  });

  it('enrolls an unknown node with a join token, then it reconnects by key alone', async () => {
    const t = setup();
    const token = generateJoinToken();
    t.registry.addToken(token, 3_600_000);
    const first = await runHandshakeInMemory(t.initiator({ token }), t.responder());
    expect(first.orchestrator.done?.enrolled).toBe(true);
    expect(t.registry.lookupNode(nodeIdFromPublicKey(t.node.publicKey)).status).toBe('accepted');
    const again = await runHandshakeInMemory(t.initiator(), t.responder());
    expect(again.orchestrator.done?.enrolled).toBe(false);
  });

  it('accepts an orchestrator key reached by a rotation statement signed by a pinned key', async () => {
    const t = setup();
    t.accept();
    const next = id('orchestrator-2');
    const rotation = createRotationStatement(t.orchestrator, next.publicKey, t.clock.nowMs);
    const responder = createResponder({ identity: next, hooks: t.registry, now: t.clock.now, rotations: [rotation] });
    const run = await runHandshakeInMemory(t.initiator(), responder);
    expect(run.node.done?.addedPins).toEqual([fingerprint(next.publicKey)]);
    expect(run.orchestrator.done).toBeDefined();
  });
});

describe('handshake: registry and enrollment refusals', () => {
  it.each([
    ['pending', 'ORCH-AUTH-510', 'NODE-AUTH-510'],
    ['denied', 'ORCH-AUTH-511', 'NODE-AUTH-511'],
    ['revoked', 'ORCH-AUTH-512', 'NODE-AUTH-512'],
  ] as const)('a %s node is refused with a sealed CLOSE the node can read', async (status, orchCode, nodeCode) => {
    const t = setup();
    t.registry.setStatus(nodeIdFromPublicKey(t.node.publicKey), status, t.node.publicKey);
    const run = await runHandshakeInMemory(t.initiator(), t.responder());
    expect(codeOf(run.orchestrator.error)).toBe(orchCode);
    expect(codeOf(run.nodeError)).toBe(nodeCode);
    expect(run.orchestrator.done).toBeUndefined();
  });

  it('a node enrolled under manual approval is pending until approved', async () => {
    const t = setup({ approval: 'manual' });
    const token = generateJoinToken();
    t.registry.addToken(token, 60_000);
    const first = await runHandshakeInMemory(t.initiator({ token }), t.responder());
    expect(codeOf(first.orchestrator.error)).toBe('ORCH-AUTH-510');
    expect(codeOf(first.nodeError)).toBe('NODE-AUTH-510');
    t.registry.setStatus(nodeIdFromPublicKey(t.node.publicKey), 'accepted');
    const second = await runHandshakeInMemory(t.initiator({ token }), t.responder());
    expect(second.orchestrator.done).toBeDefined();
  });

  it('an unenrolled node without a token is refused', async () => {
    const t = setup();
    const run = await runHandshakeInMemory(t.initiator(), t.responder());
    expect(codeOf(run.orchestrator.error)).toBe('ORCH-AUTH-513');
    expect(codeOf(run.nodeError)).toBe('NODE-AUTH-513');
  });

  it('an expired token is refused', async () => {
    const t = setup();
    const token = generateJoinToken();
    t.registry.addToken(token, 60_000);
    t.clock.advance(60_001);
    const run = await runHandshakeInMemory(t.initiator({ token }), t.responder());
    expect(codeOf(run.orchestrator.error)).toBe('ORCH-AUTH-501');
    expect(run.orchestrator.error?.data['reason']).toBe('expired');
    expect(codeOf(run.nodeError)).toBe('NODE-AUTH-515');
  });

  it('a token used once is refused for a second node', async () => {
    const t = setup();
    const token = generateJoinToken();
    t.registry.addToken(token, 60_000);
    expect((await runHandshakeInMemory(t.initiator({ token }), t.responder())).orchestrator.done).toBeDefined();
    const other = id('other-node');
    const initiator = createInitiator({ identity: other, pins: new PinSet([fingerprint(t.orchestrator.publicKey)]), token, now: t.clock.now });
    const run = await runHandshakeInMemory(initiator, t.responder());
    expect(codeOf(run.orchestrator.error)).toBe('ORCH-AUTH-501');
    expect(run.orchestrator.error?.data['reason']).toBe('used');
    expect(codeOf(run.nodeError)).toBe('NODE-AUTH-515');
  });

  it('a token that was never issued is refused', async () => {
    const t = setup();
    const run = await runHandshakeInMemory(t.initiator({ token: generateJoinToken() }), t.responder());
    expect(run.orchestrator.error?.data['reason']).toBe('invalid');
  });

  it('a known node id arriving with another key is denied', async () => {
    const t = setup();
    const impostor = id('impostor');
    // The registry says this id belongs to another key (e.g. a store filled by an older build).
    t.registry.nodes.set(nodeIdFromPublicKey(t.node.publicKey), { status: 'accepted', publicKey: impostor.publicKey });
    const run = await runHandshakeInMemory(t.initiator(), t.responder());
    expect(codeOf(run.orchestrator.error)).toBe('ORCH-AUTH-514');
    expect(codeOf(run.nodeError)).toBe('NODE-AUTH-514');
    // And an impostor key can never name the victim's id: the id is derived from the key.
    expect(nodeIdFromPublicKey(impostor.publicKey)).not.toBe(nodeIdFromPublicKey(t.node.publicKey));
  });
});

describe('handshake: attacks', () => {
  it('a substituted orchestrator key (man in the middle) is refused by the node', async () => {
    const t = setup();
    t.accept();
    const mitm = createResponder({ identity: id('mitm'), hooks: t.registry, now: t.clock.now });
    const run = await runHandshakeInMemory(t.initiator(), mitm);
    expect(codeOf(run.nodeError)).toBe('NODE-AUTH-501');
    expect(run.node.send?.length).toBe(17); // a REJECT, never a FINISH with the node's signature
    expect(codeOf(run.orchestrator.error)).toBe('ORCH-AUTH-535');
  });

  it('a rotation statement signed by an unpinned key does not add a pin', async () => {
    const t = setup();
    const mitm = id('mitm');
    const forged = createRotationStatement(id('someone-else'), mitm.publicKey, t.clock.nowMs);
    const responder = createResponder({ identity: mitm, hooks: t.registry, now: t.clock.now, rotations: [forged] });
    const run = await runHandshakeInMemory(t.initiator(), responder);
    expect(codeOf(run.nodeError)).toBe('NODE-AUTH-501');
  });

  it('a replayed HELLO gets a fresh RESPONSE, and the old FINISH then fails key confirmation', async () => {
    const t = setup();
    t.accept();
    const recorded = await runHandshakeInMemory(t.initiator(), t.responder());
    const [hello, , finish] = recorded.messages as [Uint8Array, Uint8Array, Uint8Array];
    const victim = t.responder();
    const response = await victim.next(hello);
    expect(response.send).toBeDefined();
    expect(response.send).not.toEqual(recorded.messages[1]);
    const step = await victim.next(finish);
    expect(codeOf(step.error)).toBe('ORCH-AUTH-506');
    expect(step.done).toBeUndefined();
  });

  it('a replayed HELLO older than the skew window is refused before any key work', async () => {
    const t = setup();
    t.accept();
    const hello = t.initiator().start();
    t.clock.advance(6 * 60_000);
    const step = await t.responder().next(hello);
    expect(codeOf(step.error)).toBe('ORCH-AUTH-507');
  });

  it("a FINISH from an earlier session is refused in a new one", async () => {
    const t = setup();
    t.accept();
    const old = await runHandshakeInMemory(t.initiator(), t.responder());
    const initiator = t.initiator();
    const responder = t.responder();
    const response = await responder.next(initiator.start());
    await initiator.next(response.send!);
    const step = await responder.next(old.messages[2]!);
    expect(codeOf(step.error)).toBe('ORCH-AUTH-506');
  });

  const LOW_ORDER_POINT = Uint8Array.from(Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex'));

  it.each([
    ['all-zero', new Uint8Array(32)],
    ['low-order', LOW_ORDER_POINT],
  ])('an %s ephemeral key in HELLO is refused', async (_name, key) => {
    const t = setup();
    const hello = t.initiator().start();
    hello.set(key, 16);
    const step = await t.responder().next(hello);
    expect(codeOf(step.error)).toBe('ORCH-AUTH-504');
  });

  it.each([
    ['all-zero', new Uint8Array(32)],
    ['low-order', LOW_ORDER_POINT],
  ])('an %s ephemeral key in RESPONSE is refused by the node', async (_name, key) => {
    const t = setup();
    const initiator = t.initiator();
    const response = (await t.responder().next(initiator.start())).send!;
    response.set(key, 16);
    const step = await initiator.next(response);
    expect(codeOf(step.error)).toBe('NODE-AUTH-504');
  });

  it('a malleated orchestrator signature (S + L) is refused, though plain tweetnacl accepts it', async () => {
    const t = setup();
    t.accept();
    const signature = tweetnaclProvider.sign(Buffer.from('m'), t.orchestrator.seed, t.orchestrator.publicKey);
    expect(nacl.sign.detached.verify(Buffer.from('m'), malleate(signature), t.orchestrator.publicKey)).toBe(true);
    for (const provider of [tweetnaclProvider, nodeCryptoProvider]) {
      const run = await runHandshakeInMemory(t.initiator({ provider }), t.responder({ provider: malleatingProvider }));
      expect(codeOf(run.nodeError)).toBe('NODE-AUTH-505');
    }
  });

  it('a malleated node signature (S + L) is refused by the orchestrator', async () => {
    const t = setup();
    t.accept();
    const run = await runHandshakeInMemory(t.initiator({ provider: malleatingProvider }), t.responder());
    expect(codeOf(run.orchestrator.error)).toBe('ORCH-AUTH-505');
    // The REJECT after FINISH reaches the node, which had already derived keys.
    expect(codeOf(run.nodeError)).toBe('NODE-AUTH-535');
    expect(run.nodeError?.data['remoteFailure']).toBe('bad-signature');
  });

  it('a downgraded version in HELLO is refused and the node is told why', async () => {
    const t = setup();
    const initiator = t.initiator();
    const hello = initiator.start();
    hello[4] = 0;
    const step = await t.responder().next(hello);
    expect(codeOf(step.error)).toBe('ORCH-AUTH-503');
    const nodeStep = await initiator.next(step.send!);
    expect(codeOf(nodeStep.error)).toBe('NODE-AUTH-503');
  });

  it('a changed suite in RESPONSE is refused by the node', async () => {
    const t = setup();
    const initiator = t.initiator();
    const response = (await t.responder().next(initiator.start())).send!;
    response[6] = 2;
    expect(codeOf((await initiator.next(response)).error)).toBe('NODE-AUTH-503');
  });

  it('any change to HELLO that the orchestrator accepts still breaks the transcript', async () => {
    const t = setup();
    const initiator = t.initiator();
    const hello = initiator.start();
    hello[15] = (hello[15] as number) ^ 1; // the timestamp's last bit: still inside the skew window
    const response = await t.responder().next(hello);
    expect(response.error).toBeUndefined();
    expect(codeOf((await initiator.next(response.send!)).error)).toBe('NODE-AUTH-506');
  });

  it('a node clock 10 minutes off is refused with the clock-skew code on both sides', async () => {
    const t = setup();
    t.accept();
    const nodeClock = new ManualClock(t.clock.nowMs + 10 * 60_000);
    const run = await runHandshakeInMemory(t.initiator({ now: nodeClock.now }), t.responder());
    expect(codeOf(run.orchestrator.error)).toBe('ORCH-AUTH-507');
    expect(run.orchestrator.error?.data['skewMs']).toBe(600_000);
    expect(codeOf(run.nodeError)).toBe('NODE-AUTH-507');
  });

  it('the node checks the orchestrator clock itself', async () => {
    const t = setup();
    const nodeClock = new ManualClock(t.clock.nowMs - 10 * 60_000);
    const initiator = t.initiator({ now: nodeClock.now });
    const response = await t.responder({ maxClockSkewMs: 3_600_000 }).next(initiator.start());
    expect(codeOf((await initiator.next(response.send!)).error)).toBe('NODE-AUTH-507');
  });

  it.each([
    ['bit 63 set', 1n << 63n],
    ['bit 53 set (just past a JS number)', 1n << 53n],
  ])('a HELLO timestamp with %s is clock skew: all 64 bits are read', async (_name, high) => {
    const t = setup();
    const hello = t.initiator().start();
    const view = new DataView(hello.buffer, hello.byteOffset, hello.byteLength);
    view.setBigUint64(8, view.getBigUint64(8) | high);
    const step = await t.responder().next(hello);
    expect(codeOf(step.error)).toBe('ORCH-AUTH-507');
    expect(step.error?.data['peerTimeMs']).toBe((BigInt(t.clock.nowMs) | high).toString());
  });

  it('a RESPONSE timestamp with bit 63 set is clock skew for the node', async () => {
    const t = setup();
    const initiator = t.initiator();
    const response = (await t.responder().next(initiator.start())).send!;
    response[8] = (response[8] as number) | 0x80;
    expect(codeOf((await initiator.next(response)).error)).toBe('NODE-AUTH-507');
  });

  it('a REJECT is never answered: not as the first message, not in place of FINISH or RESPONSE, not when malformed', async () => {
    const t = setup();
    const reject = encodeReject(16, t.clock.nowMs);
    const first = await t.responder().next(reject);
    expect(first.error).toBeDefined();
    expect(first.send).toBeUndefined();
    const malformed = await t.responder().next(reject.subarray(0, 12));
    expect(codeOf(malformed.error)).toBe('ORCH-AUTH-502');
    expect(malformed.send).toBeUndefined();

    const initiator = t.initiator();
    const responder = t.responder();
    await responder.next(initiator.start());
    const instead = await responder.next(reject);
    expect(codeOf(instead.error)).toBe('ORCH-AUTH-535');
    expect(instead.send).toBeUndefined();

    const node = t.initiator();
    node.start();
    const refused = await node.next(encodeReject(8, t.clock.nowMs));
    expect(codeOf(refused.error)).toBe('NODE-AUTH-509');
    expect(refused.send).toBeUndefined();
  });

  it('a rate-limited REJECT is not answered either', async () => {
    const t = setup();
    const limiter = new HandshakeRateLimiter({ burst: 1, refillPerSecond: 0.001, now: t.clock.now });
    await t.responder({ rateLimiter: limiter, source: 'x' }).next(t.initiator().start());
    const step = await t.responder({ rateLimiter: limiter, source: 'x' }).next(encodeReject(16, t.clock.nowMs));
    expect(codeOf(step.error)).toBe('ORCH-AUTH-509');
    expect(step.send).toBeUndefined();
  });

  it('a REJECT with a timestamp beyond any date is still read (the detail says so instead of throwing)', async () => {
    const t = setup();
    const node = t.initiator();
    node.start();
    const reject = encodeReject(11, t.clock.nowMs);
    reject.fill(0xff, 9);
    const step = await node.next(reject);
    expect(codeOf(step.error)).toBe('NODE-AUTH-512');
  });

  it('a handshake slower than 5 s times out', async () => {
    const t = setup();
    t.accept();
    const initiator = t.initiator();
    const responder = t.responder();
    const response = await responder.next(initiator.start());
    t.clock.advance(5_001);
    expect(codeOf((await initiator.next(response.send!)).error)).toBe('NODE-AUTH-508');
    expect(codeOf(responder.expire())).toBe('ORCH-AUTH-508');
    expect(responder.expire()).toBeUndefined();
  });

  it.each([
    ['empty', new Uint8Array(0)],
    ['short', Uint8Array.of(0x43, 0x4e)],
    ['truncated HELLO', null],
    ['random', null],
  ])('garbage (%s) instead of HELLO is a malformed-message error', async (name, bytes) => {
    const t = setup();
    let input: Uint8Array | null = bytes;
    if (name === 'truncated HELLO') input = t.initiator().start().subarray(0, 40);
    if (name === 'random') input = nacl.randomBytes(48);
    expect(codeOf((await t.responder().next(input!)).error)).toBe('ORCH-AUTH-502');
  });

  it('a fuzzed RESPONSE and FINISH never crash and never complete', async () => {
    const t = setup();
    t.accept();
    const random = deterministicRandom('fuzz-handshake');
    for (let round = 0; round < 60; round++) {
      const initiator = t.initiator();
      const responder = t.responder();
      const response = (await responder.next(initiator.start())).send!;
      const mutated = Uint8Array.from(response);
      const position = (random(2)[0]! * 256 + random(1)[0]!) % mutated.length;
      mutated[position] = (mutated[position]! ^ (1 + (random(1)[0]! % 255))) & 0xff;
      const cut = round % 3 === 0 ? mutated.subarray(0, random(1)[0]! % mutated.length) : mutated;
      const step = await initiator.next(cut);
      expect(step.done).toBeUndefined();
      expect(codeOf(step.error)).toMatch(/^NODE-AUTH-50[2-7]$/);
    }
  });

  it('a flood of HELLOs from one source is refused cheaply while a legitimate node gets in', async () => {
    const t = setup();
    t.accept();
    const limiter = new HandshakeRateLimiter({ burst: 20, refillPerSecond: 5, now: t.clock.now });
    const captured = captureLogger('ORCH');
    const flood = t.initiator().start();
    const started = performance.now();
    let refused = 0;
    for (let i = 0; i < 5_000; i++) {
      const step = await createResponder({
        identity: t.orchestrator,
        hooks: t.registry,
        rateLimiter: limiter,
        source: '203.0.113.9',
        now: t.clock.now,
        logger: captured.logger,
      }).next(flood);
      if (codeOf(step.error) === 'ORCH-AUTH-509') refused++;
    }
    const legit = await runHandshakeInMemory(
      t.initiator(),
      createResponder({ identity: t.orchestrator, hooks: t.registry, rateLimiter: limiter, source: '198.51.100.7', now: t.clock.now }),
    );
    const elapsedMs = performance.now() - started;
    expect(refused).toBe(5_000 - 20);
    // One line for the flood, not one per refused attempt.
    expect(captured.lines.filter((line) => line.includes('ORCH-AUTH-509'))).toHaveLength(1);
    expect(legit.orchestrator.done).toBeDefined();
    expect(elapsedMs).toBeLessThan(5_000);
  });
});

describe('handshake: failures are logged once and stay in their session', () => {
  it('logs the failure exactly once however often the caller pokes the dead handshake', async () => {
    const t = setup();
    const captured = captureLogger('ORCH');
    const responder = t.responder({ logger: captured.logger });
    const bad = t.initiator().start();
    bad.fill(0, 16);
    await responder.next(bad);
    await responder.next(bad);
    responder.expire();
    expect(captured.lines.filter((line) => line.includes('ORCH-AUTH-5')).length).toBe(1);
    expect(responder.state).toBe('failed');
  });

  it('a failing session does not disturb another one on the same orchestrator', async () => {
    const t = setup();
    t.accept();
    const goodInitiator = t.initiator();
    const goodResponder = t.responder();
    const goodResponse = await goodResponder.next(goodInitiator.start());
    const badResponder = t.responder();
    const badHello = t.initiator().start();
    badHello.fill(0, 16);
    expect((await badResponder.next(badHello)).error).toBeDefined();
    const finish = await goodInitiator.next(goodResponse.send!);
    expect((await goodResponder.next(finish.send!)).done).toBeDefined();
  });

  it('a hook failure propagates unchanged and ends the handshake', async () => {
    const t = setup();
    const boom = new Error('redis down');
    const initiator = t.initiator();
    const responder = createResponder({
      identity: t.orchestrator,
      now: t.clock.now,
      hooks: { lookupNode: () => Promise.reject(boom), enroll: () => ({ ok: false, reason: 'invalid' }) },
    });
    const response = await responder.next(initiator.start());
    const finish = await initiator.next(response.send!);
    await expect(responder.next(finish.send!)).rejects.toBe(boom);
    expect(responder.state).toBe('failed');
  });
});

describe('handshake messages', () => {
  it('binds nothing outside the transcript: HELLO carries only header, time and key', () => {
    const t = setup();
    const hello = t.initiator().start();
    expect(Buffer.from(hello.subarray(0, 8)).toString('hex')).toBe('434e434c01010100');
    expect(concatBytes(hello).length).toBe(48);
  });
});
