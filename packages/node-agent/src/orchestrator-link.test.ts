import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { backoffDelayMs, captureLogger, ConclaveError } from '@conclave/common';
import {
  MemoryEnrollment, PinSet, SecureSession, authError, createResponder, decodeNodeMessage, encodeOrchestratorMessage, fingerprint,
  generateIdentity, inMemoryFrameStreams, nodeIdFromPublicKey,
} from '@conclave/protocol';
import type { FrameStream, NodeMessage__Output, OrchestratorMessage } from '@conclave/protocol';
import { LINK_CHANNEL_OPTIONS, OrchestratorLink, RECONNECT_BACKOFF, RECONNECT_CAP_MS, type OrchestratorMessageHandler } from './orchestrator-link.js';

const wait = (ms = 30): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds: frames cross on setImmediate, and a loaded machine needs more turns. */
async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await wait(5);
  }
}

/**
 * The node's link against a scripted orchestrator end: a real SecureSession responder
 * on an in-memory stream, so the whole protocol runs without gRPC.
 */
function harness() {
  const node = generateIdentity();
  const orchestrator = generateIdentity();
  const enrollment = new MemoryEnrollment();
  enrollment.setStatus(nodeIdFromPublicKey(node.publicKey), 'accepted', node.publicKey);
  const logs = captureLogger('NODE');
  const received: NodeMessage__Output[] = [];
  const sessions: Array<SecureSession<OrchestratorMessage, NodeMessage__Output>> = [];
  const calls: string[] = [];
  const handler: OrchestratorMessageHandler = {
    assign: (job) => calls.push(`assign ${job.jobId}`),
    cancel: (c) => calls.push(`cancel ${c.jobId}`),
    modelChunk: (c) => calls.push(`chunk ${c.sha256}`),
    resultAck: (a) => calls.push(`ack ${a.jobId}`),
    chatReplies: (r) => calls.push(`chat replies ${r.replies.map((x) => x.requestId).join(',')}`),
    chatDelivery: (d) => calls.push(`chat delivery ${d.room} ${d.messages.map((m) => m.seq).join(',')}`),
    logAck: (a) => calls.push(`log ack ${a.upToSeq}`),
    connected: () => calls.push('connected'),
    disconnected: (e) => calls.push(`disconnected ${e.code}`),
    fatal: (e) => calls.push(`fatal ${String(e.data['failure'])}`),
  };
  /** Each connection attempt opens one in-memory stream; the orchestrator end answers Register. */
  const openStream = (): FrameStream => {
    const [nodeEnd, orchEnd] = inMemoryFrameStreams();
    const session: SecureSession<OrchestratorMessage, NodeMessage__Output> = new SecureSession({
      stream: orchEnd,
      side: { role: 'responder', handshake: createResponder({ identity: orchestrator, hooks: enrollment, logger: logs.logger }) },
      encode: encodeOrchestratorMessage,
      decode: decodeNodeMessage,
      codes: { failed: 'ORCH-NET-602', ended: 'ORCH-NET-602', protocol: 'ORCH-NET-603' },
      peerName: 'node',
      logger: logs.logger,
      onMessage: (m) => {
        received.push(m);
        if (m.body === 'register') session.send({ registered: { nodeId: m.register?.nodeId ?? '', heartbeatIntervalMs: 50 } });
      },
      onClosed: () => {},
      lingerMs: 10,
    });
    sessions.push(session);
    return nodeEnd;
  };
  const link = new OrchestratorLink({
    address: 'in-memory',
    logger: logs.logger,
    handler,
    identity: node,
    pins: new PinSet([fingerprint(orchestrator.publicKey)]),
    register: () => ({ nodeId: nodeIdFromPublicKey(node.publicKey), name: 'n', slots: 2 }),
    heartbeat: () => ({ slots: 2, memoryUsedBytes: 1234 }),
    openStream,
  });
  return { link, received, sessions, calls, logs };
}

let open: OrchestratorLink | undefined;
afterEach(async () => {
  await open?.close();
  open = undefined;
});

describe('OrchestratorLink', () => {
  it('registers after the handshake, then sends heartbeats at the interval Registered names', async () => {
    const h = harness();
    open = h.link;
    h.link.start();
    await until(() => h.received.filter((m) => m.body === 'heartbeat').length >= 3);
    expect(h.link.state).toBe('connected');
    expect(h.received[0]?.body).toBe('register');
    const heartbeats = h.received.filter((m) => m.body === 'heartbeat');
    // 50 ms from Registered, not the 1000 ms default: three came well within a second.
    expect(heartbeats.length).toBeGreaterThanOrEqual(3);
    expect(heartbeats[0]?.heartbeat).toMatchObject({ slots: 2, memoryUsedBytes: 1234 });
    expect(h.calls[0]).toBe('connected');
  });

  it('hands every kind of work to its handler method, in order', async () => {
    const h = harness();
    open = h.link;
    h.link.start();
    await until(() => h.link.state === 'connected');
    const orch = h.sessions[0];
    orch?.send({ assign: { jobId: 'j1', attempt: 1 } });
    orch?.send({ cancel: { jobId: 'j1', attempt: 1, reason: 'x' } });
    orch?.send({ modelChunk: { sha256: 'abc', offset: 0, last: true } });
    orch?.send({ resultAck: { jobId: 'j0', attempt: 1 } });
    orch?.send({ chatReplies: { replies: [{ requestId: 7, room: { name: 'fleet' } }, { requestId: 8, posted: { seq: 3 } }] } });
    orch?.send({ chatDelivery: { room: 'fleet', epoch: 'e', messages: [{ room: 'fleet', seq: 4 }, { room: 'fleet', seq: 5 }] } });
    await until(() => h.calls.length === 7);
    expect(h.calls).toEqual(['connected', 'assign j1', 'cancel j1', 'chunk abc', 'ack j0', 'chat replies 7,8', 'chat delivery fleet 4,5']);
  });

  it('reconnects with a new session when the orchestrator ends it, and tells the handler', async () => {
    const h = harness();
    open = h.link;
    h.link.start();
    await until(() => h.link.state === 'connected');
    h.sessions[0]?.close(new ConclaveError('ORCH-NET-602', { detail: 'orchestrator shutting down' }));
    await until(() => h.calls.length === 3);
    expect(h.sessions.length).toBeGreaterThanOrEqual(2);
    expect(h.link.state).toBe('connected');
    expect(h.calls).toEqual(['connected', 'disconnected NODE-NET-602', 'connected']);
  });

  it('stops, without retrying, when the orchestrator says the node is revoked', async () => {
    const h = harness();
    open = h.link;
    h.link.start();
    await until(() => h.link.state === 'connected');
    h.sessions[0]?.close(authError('orchestrator', 'revoked', { detail: 'revoked by operator' }));
    await until(() => h.link.state === 'closed');
    // Longer than the first backoff delay (at most 250 ms): a retry would have opened a second stream.
    await wait(600);
    expect(h.link.state).toBe('closed');
    expect(h.sessions).toHaveLength(1);
    expect(h.calls).toEqual(['connected', 'fatal revoked']);
  });

  it('says goodbye when it closes, and sends nothing after', async () => {
    const h = harness();
    h.link.start();
    await until(() => h.link.state === 'connected');
    await h.link.close('node shutting down');
    await until(() => h.received.at(-1)?.body === 'goodbye');
    expect(h.received.at(-1)).toMatchObject({ body: 'goodbye', goodbye: { reason: 'node shutting down' } });
    expect(h.link.send({ heartbeat: {} })).toBe(false);
  });

  it('caps its reconnect delay so that a node is back within 10 s of the orchestrator', async () => {
    // Worst case: the longest delay, then a handshake and Register (well under a second on a LAN).
    expect(RECONNECT_CAP_MS).toBeLessThanOrEqual(5_000);
    expect(backoffDelayMs(1_000, { ...RECONNECT_BACKOFF, random: () => 1 })).toBe(RECONNECT_CAP_MS);
    // gRPC's channel backs off on its own too, beneath the link: capped the same.
    expect(LINK_CHANNEL_OPTIONS['grpc.max_reconnect_backoff_ms']).toBe(RECONNECT_CAP_MS);
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const logs = captureLogger('NODE');
      let attempts = 0;
      // An orchestrator that is down: every stream fails at once, as an unreachable address does.
      const openStream = (): FrameStream => {
        attempts += 1;
        const stream = Object.assign(new EventEmitter(), { write: () => true, end: () => {}, destroy: () => {} });
        setImmediate(() => stream.emit('error', new Error('connect ECONNREFUSED')));
        return stream as unknown as FrameStream;
      };
      const orchestrator = generateIdentity();
      const idle: OrchestratorMessageHandler = {
        assign: () => {}, cancel: () => {}, modelChunk: () => {}, resultAck: () => {}, chatReplies: () => {}, chatDelivery: () => {}, logAck: () => {},
        connected: () => {}, disconnected: () => {}, fatal: () => {},
      };
      const link = new OrchestratorLink({
        address: 'down:7400', logger: logs.logger, handler: idle, identity: generateIdentity(),
        pins: new PinSet([fingerprint(orchestrator.publicKey)]),
        register: () => ({ nodeId: 'n', name: 'n', slots: 1 }), heartbeat: () => ({}), openStream,
        // The top of every jitter range: the longest delay the link can pick.
        reconnectBackoff: { random: () => 0.999_999 },
      });
      open = link;
      link.start();
      const delays = (): number[] => logs.jsonLines.map((l) => (JSON.parse(l) as { delayMs?: number }).delayMs).filter((d): d is number => d !== undefined);
      const turn = () => new Promise((r) => setImmediate(r));
      for (let i = 0; i < 12; i += 1) {
        while (delays().length <= i) await turn();
        vi.advanceTimersByTime(Math.ceil(delays()[i] ?? 0) + 1);
        while (attempts <= i + 1) await turn();
      }
      const seen = delays().map(Math.round);
      expect(seen.slice(0, 6)).toEqual([250, 500, 1000, 2000, 4000, 4000]);
      expect(Math.max(...seen)).toBe(RECONNECT_CAP_MS);
    } finally {
      vi.useRealTimers();
    }
  });
});
