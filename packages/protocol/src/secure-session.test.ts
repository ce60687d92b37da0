import { describe, expect, it } from 'vitest';
import { captureLogger, ConclaveError } from '@conclave/common';
import { inMemoryFrameStreams } from './in-memory-frame-stream.js';
import { authError } from './secure/auth-failure.js';
import { encodeReject } from './secure/handshake-messages.js';
import { MemoryEnrollment } from './secure/enrollment.js';
import { createInitiator, createResponder } from './secure/handshake.js';
import { fingerprint, identityFromSeed, nodeIdFromPublicKey } from './secure/identity.js';
import { PinSet } from './secure/pins.js';
import { SecureSession, type FrameStream } from './secure-session.js';
import { deterministicRandom } from './secure/test-support.js';

const encode = (s: string): Uint8Array => new Uint8Array(Buffer.from(s));
const decode = (b: Uint8Array): string => Buffer.from(b).toString();
/** The error an in-memory end was ended with (what a gRPC server sends as the call's status). */
const endReasonOf = (stream: FrameStream): ConclaveError | undefined => (stream as unknown as { endReason?: ConclaveError }).endReason;
const writtenBy = (stream: FrameStream): unknown[] => (stream as unknown as { written: unknown[] }).written;
const wait = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds (the frames cross on setImmediate; a loaded machine needs more turns). */
async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await wait(5);
  }
}

/** Both ends of one session over an in-memory stream pair, each recording what it got. */
function pair(
  options: { nodeAccepted?: boolean; trustOrchestrator?: boolean; onOrchestratorMessage?: (m: string) => void; nodeNow?: () => number } = {},
) {
  const random = deterministicRandom('secure-session');
  const node = identityFromSeed(random(32));
  const orchestrator = identityFromSeed(random(32));
  const enrollment = new MemoryEnrollment();
  if (options.nodeAccepted ?? true) enrollment.setStatus(nodeIdFromPublicKey(node.publicKey), 'accepted', node.publicKey);
  const pins = new PinSet([fingerprint((options.trustOrchestrator ?? true) ? orchestrator.publicKey : node.publicKey)]);
  const logs = captureLogger('NODE');
  const orchLogs = captureLogger('ORCH');
  const [nodeStream, orchStream] = inMemoryFrameStreams();
  const ends = {
    node: { messages: [] as string[], closed: [] as ConclaveError[], established: 0 },
    orchestrator: { messages: [] as string[], closed: [] as ConclaveError[], established: 0 },
  };
  const make = (side: 'node' | 'orchestrator', stream: FrameStream): SecureSession<string, string> =>
    new SecureSession<string, string>({
      stream,
      side:
        side === 'node'
          ? { role: 'initiator', handshake: createInitiator({ identity: node, pins, logger: logs.logger, ...(options.nodeNow ? { now: options.nodeNow } : {}) }) }
          : { role: 'responder', handshake: createResponder({ identity: orchestrator, hooks: enrollment, logger: orchLogs.logger }) },
      encode,
      decode,
      codes: side === 'node'
        ? { failed: 'NODE-NET-601', ended: 'NODE-NET-602', protocol: 'NODE-NET-602' }
        : { failed: 'ORCH-NET-602', ended: 'ORCH-NET-602', protocol: 'ORCH-NET-603' },
      peerName: side === 'node' ? 'orchestrator' : 'node',
      logger: side === 'node' ? logs.logger : orchLogs.logger,
      onEstablished: () => {
        ends[side].established++;
      },
      onMessage: (m) => {
        if (side === 'orchestrator') options.onOrchestratorMessage?.(m);
        ends[side].messages.push(m);
      },
      onClosed: (reason) => {
        ends[side].closed.push(reason);
      },
      lingerMs: 10,
    });
  // The responder must listen before the initiator's HELLO arrives; both are set up in this tick.
  const orchSession = make('orchestrator', orchStream);
  const nodeSession = make('node', nodeStream);
  return { nodeSession, orchSession, ends, nodeStream, orchStream, logs, orchLogs };
}

describe('SecureSession', () => {
  it('runs the handshake, then carries sealed messages both ways in order', async () => {
    const { nodeSession, orchSession, ends, nodeStream } = pair();
    await until(() => nodeSession.state === 'open' && orchSession.state === 'open');
    expect([ends.node.established, ends.orchestrator.established]).toEqual([1, 1]);
    // Long enough that finding one in random ciphertext by chance is out of the question.
    const messages = ['first message, in order', 'second message, in order', 'third message, in order'];
    for (const m of messages) expect(nodeSession.send(m)).toBe(true);
    orchSession.send('pong');
    await until(() => ends.orchestrator.messages.length === 3 && ends.node.messages.length === 1);
    expect(ends.orchestrator.messages).toEqual(messages);
    expect(ends.node.messages).toEqual(['pong']);
    // Nothing after the handshake travels in the clear.
    const written = (nodeStream as unknown as { written: Array<{ frame: string; sealed?: Uint8Array }> }).written;
    const sealed = written.filter((f) => f.frame === 'sealed');
    expect(sealed).toHaveLength(3);
    for (const f of sealed) expect(Buffer.from(f.sealed as Uint8Array).includes(Buffer.from('message, in order'))).toBe(false);
  });

  it('tells the peer a failure in a sealed CLOSE it can trust, and ends both ends once', async () => {
    const { nodeSession, orchSession, ends } = pair();
    await until(() => nodeSession.state === 'open' && orchSession.state === 'open');
    orchSession.close(authError('orchestrator', 'revoked', { detail: 'operator revoked it' }));
    await until(() => ends.node.closed.length > 0);
    await wait(40);
    expect(nodeSession.state).toBe('closed');
    expect(nodeSession.send('late')).toBe(false);
    expect(ends.node.closed).toHaveLength(1);
    // The node learns "revoked" from the sealed frame, so it knows not to retry.
    expect(ends.node.closed[0]?.data['failure']).toBe('revoked');
    expect(ends.orchestrator.closed.map((e) => e.data['failure'])).toEqual(['revoked']);
  });

  it('ends with the side\'s own code when the peer closes without a failure or the stream ends', async () => {
    const { nodeSession, orchSession, ends } = pair();
    await until(() => nodeSession.state === 'open' && orchSession.state === 'open');
    nodeSession.close(new ConclaveError('NODE-NET-602', { detail: 'node shutting down' }));
    await until(() => ends.orchestrator.closed.length > 0);
    await wait(40);
    expect(ends.orchestrator.closed.map((e) => e.code)).toEqual(['ORCH-NET-602']);
    expect(ends.orchestrator.closed[0]?.message).toContain('node closed the session');
  });

  it('refuses a frame in the clear after the handshake with the protocol code', async () => {
    const { nodeSession, orchSession, ends, nodeStream } = pair();
    await until(() => nodeSession.state === 'open' && orchSession.state === 'open');
    nodeStream.write({ handshake: encode('not a handshake any more') });
    await until(() => orchSession.state === 'closed');
    expect(orchSession.state).toBe('closed');
    expect(ends.orchestrator.closed.map((e) => e.code)).toEqual(['ORCH-NET-603']);
    expect(ends.orchestrator.messages).toEqual([]);
  });

  it('a close for a protocol violation carries the protocol reason (21), not an orderly 0', async () => {
    const { nodeSession, orchSession, ends, orchStream } = pair();
    await until(() => nodeSession.state === 'open' && orchSession.state === 'open');
    orchSession.close(new ConclaveError('ORCH-NET-603', { detail: 'first sealed message must be a Register for node x' }));
    await until(() => ends.node.closed.length > 0);
    expect(ends.node.closed[0]?.data).toMatchObject({ remoteFailure: 'protocol', remoteReason: 21 });
    expect(ends.node.closed[0]?.code).toBe('NODE-AUTH-535');
    expect(ends.node.closed[0]?.message).toContain('ORCH-NET-603');
    // The stream ends with the error, so gRPC can end the call with its status.
    expect(endReasonOf(orchStream)?.code).toBe('ORCH-NET-603');
  });

  it('an orderly close (shutdown) is reason 0 and the stream ends without an error', async () => {
    const { nodeSession, orchSession, ends, orchStream } = pair();
    await until(() => nodeSession.state === 'open' && orchSession.state === 'open');
    orchSession.close(new ConclaveError('ORCH-NET-602', { detail: 'orchestrator shutting down' }));
    await until(() => ends.node.closed.length > 0);
    expect(ends.node.closed.map((e) => e.code)).toEqual(['NODE-NET-602']);
    expect(ends.node.closed[0]?.message).toContain('orchestrator shutting down');
    expect(endReasonOf(orchStream)).toBeUndefined();
  });

  it('a frame that fails authentication: a CLOSE naming it, the stream ended with the error, logged once', async () => {
    const { nodeSession, orchSession, ends, nodeStream, orchStream, logs, orchLogs } = pair();
    await until(() => nodeSession.state === 'open' && orchSession.state === 'open');
    // Counter 0, as expected, but bytes no key sealed.
    nodeStream.write({ sealed: new Uint8Array(Buffer.concat([Buffer.alloc(8), Buffer.alloc(40, 7)])) });
    await until(() => ends.node.closed.length > 0 && ends.orchestrator.closed.length > 0);
    await wait(40);
    expect(ends.orchestrator.closed.map((e) => e.code)).toEqual(['ORCH-AUTH-530']);
    expect(ends.node.closed[0]?.data).toMatchObject({ remoteFailure: 'frame-auth', remoteReason: 17 });
    expect(endReasonOf(orchStream)?.code).toBe('ORCH-AUTH-530');
    expect(orchLogs.lines.filter((l) => /ORCH-AUTH-5\d\d|NET-60\d/.test(l)), orchLogs.lines.join('\n')).toHaveLength(1);
    expect(orchLogs.lines.filter((l) => l.includes('ORCH-AUTH-530'))).toHaveLength(1);
    // And the node logs the orchestrator's CLOSE once, under its own code.
    expect(logs.lines.filter((l) => /NODE-AUTH-5\d\d|NET-60\d/.test(l)), logs.lines.join('\n')).toHaveLength(1);
    expect(logs.lines.filter((l) => l.includes('NODE-AUTH-535'))).toHaveLength(1);
  });

  it('a REJECT arriving after the handshake is not answered', async () => {
    const { nodeSession, orchSession, ends, orchStream } = pair();
    await until(() => nodeSession.state === 'open' && orchSession.state === 'open');
    const before = writtenBy(orchStream).length;
    (nodeSession as unknown as { o: { stream: FrameStream } }).o.stream.write({ handshake: encodeReject(16, Date.now()) });
    await until(() => orchSession.state === 'closed');
    await wait(20);
    expect(ends.orchestrator.closed.map((e) => e.code)).toEqual(['ORCH-NET-603']);
    expect(writtenBy(orchStream).slice(before)).toEqual([]);
  });

  it('the handshake deadline is 5 s of wall time from the stream opening, whatever the handshake clock says', async () => {
    const [, orchStream] = inMemoryFrameStreams();
    const closed: ConclaveError[] = [];
    const logs = captureLogger('ORCH');
    const orchestrator = identityFromSeed(deterministicRandom('deadline')(32));
    const t0 = Date.now();
    new SecureSession<string, string>({
      stream: orchStream,
      side: {
        role: 'responder',
        // A clock a minute ahead and a short deadline: the timer must not wait for the handshake clock.
        handshake: createResponder({ identity: orchestrator, hooks: new MemoryEnrollment(), now: () => Date.now() + 60_000, timeoutMs: 200 }),
      },
      encode, decode, codes: { failed: 'ORCH-NET-602', ended: 'ORCH-NET-602', protocol: 'ORCH-NET-603' }, peerName: 'node',
      logger: logs.logger, onMessage: () => undefined, onClosed: (reason) => closed.push(reason), lingerMs: 10,
    });
    await until(() => closed.length > 0, 3_000);
    expect(closed.map((e) => e.code)).toEqual(['ORCH-AUTH-508']);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('a node whose clock is a minute behind (inside the skew window) still completes the handshake', async () => {
    const { nodeSession, orchSession, ends } = pair({ nodeNow: () => Date.now() - 60_000 });
    await until(() => (nodeSession.state === 'open' && orchSession.state === 'open') || ends.node.closed.length > 0);
    expect(ends.node.closed).toEqual([]);
    expect(nodeSession.state).toBe('open');
  });

  it('closes with the error a message handler throws, and reads no frame after it', async () => {
    const { nodeSession, ends } = pair({
      onOrchestratorMessage: (m) => {
        if (m === 'two') throw new ConclaveError('ORCH-NET-603', { detail: 'register sent twice' });
      },
    });
    await until(() => nodeSession.state === 'open' && ends.orchestrator.established === 1);
    for (const m of ['one', 'two', 'three']) nodeSession.send(m);
    await until(() => ends.node.closed.length > 0);
    await wait(40);
    expect(ends.orchestrator.messages).toEqual(['one']);
    expect(ends.orchestrator.closed.map((e) => e.code)).toEqual(['ORCH-NET-603']);
    expect(ends.node.closed).toHaveLength(1);
  });

  it('fails the handshake with the handshake\'s coded error when the node does not trust the key', async () => {
    const { nodeSession, ends } = pair({ trustOrchestrator: false });
    await until(() => nodeSession.state === 'closed');
    expect(nodeSession.state).toBe('closed');
    expect(ends.node.established).toBe(0);
    expect(ends.node.closed[0]?.data['failure']).toBe('pin-mismatch');
  });

  it('refuses an unknown node after it proved its key, in a sealed CLOSE naming why', async () => {
    const { ends } = pair({ nodeAccepted: false });
    await until(() => ends.node.closed.length > 0 && ends.orchestrator.closed.length > 0);
    // The node finished its side of the handshake; the orchestrator never opened the session.
    expect([ends.node.established, ends.orchestrator.established]).toEqual([1, 0]);
    expect(ends.node.messages).toEqual([]);
    expect(ends.node.closed.map((e) => e.data['failure'])).toEqual(['unknown-node']);
    expect(ends.orchestrator.closed).toHaveLength(1);
  });
});
