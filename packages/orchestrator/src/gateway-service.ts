import { ConclaveError, isConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { SealedChannel, createResponder, decodeNodeMessage, fingerprint } from '@conclave/protocol';
import type {
  EnrollmentHooks, FetchModel__Output, HandshakeRateLimiter, Identity, NodeFrame__Output, NodeGatewayHandlers,
  Register__Output, RotationStatement,
} from '@conclave/protocol';
import { wireError } from './dispatcher.js';
import type { ModelRegistry } from './model-registry.js';
import type { NodeRegistry } from './node-registry.js';
import { NodeSession } from './node-session.js';
import { SealedTransport } from './session-transport.js';
import type { SessionStream } from './session-transport.js';

/** After the handshake, the node's first sealed message must be its Register, within this long. */
export const REGISTER_TIMEOUT_MS = 5_000;

export interface GatewayServiceOptions {
  registry: NodeRegistry;
  models: ModelRegistry;
  logger: Logger;
  heartbeatIntervalMs: number;
  version: string;
  /** The orchestrator's long-term key. */
  identity: Identity;
  /** The registry the handshake consults: known nodes, and enrollment with a join token. */
  enrollment: EnrollmentHooks;
  /** One limiter for the whole gateway: handshake attempts per source address. */
  rateLimiter: HandshakeRateLimiter;
  /** Statements that lead nodes pinned to older orchestrator keys to this one. */
  rotations?: readonly RotationStatement[];
}

/**
 * NodeGateway.Session: one bidirectional stream per node. It opens with the three-message
 * handshake (docs/protocol.md); after it every frame is sealed, the first one carrying the
 * node's Register. Frames in the clear are refused. A failure ends only this stream, with a
 * coded AUTH error logged once by the handshake or the channel.
 */
export function createGatewayService(o: GatewayServiceOptions): NodeGatewayHandlers {
  return {
    Session(stream: SessionStream) {
      const peer = stream.getPeer();
      const source = peerHost(peer);
      const log = o.logger.child({ peer });
      const responder = createResponder({
        identity: o.identity, hooks: o.enrollment, rateLimiter: o.rateLimiter, source, logger: o.logger,
        logMeta: { peer }, ...(o.rotations ? { rotations: o.rotations } : {}),
      });
      let channel: SealedChannel | undefined;
      let peerKey: Uint8Array | undefined;
      let session: NodeSession | undefined;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(deadline);
        stream.removeAllListeners('data');
        try {
          stream.end();
        } catch {
          // Already gone.
        }
      };
      // The handshake must complete, and the node register, within the deadline.
      const deadline = setTimeout(() => {
        if (session) return;
        const expired = responder.expire();
        if (!expired) log.warn('NET', 'node did not register in time', { code: 'ORCH-NET-603' });
        finish();
      }, Math.max(0, responder.deadlineMs - Date.now()) + REGISTER_TIMEOUT_MS);

      let queue = Promise.resolve();
      stream.on('data', (frame: NodeFrame__Output) => {
        queue = queue.then(() => onFrame(frame)).catch((err: unknown) => {
          log.failure(err, { section: 'NET' }, 'warn');
          if (session) session.close(new ConclaveError('ORCH-NET-603', { detail: String(err) }));
          finish();
        });
      });
      const lost = (reason: string) => {
        if (session) session.close(new ConclaveError('ORCH-NET-602', { detail: reason, data: { node: session.id } }));
        else if (channel) channel.abort(new ConclaveError('ORCH-NET-602', { detail: reason }));
        finish();
      };
      stream.on('end', () => lost('stream ended by node'));
      stream.on('cancelled', () => lost('stream cancelled'));
      stream.on('error', (err) => lost(err.message));

      async function onFrame(frame: NodeFrame__Output): Promise<void> {
        if (finished) return;
        if (frame.frame === 'handshake' && frame.handshake && !channel) {
          const step = await responder.next(frame.handshake);
          if (step.send) stream.write({ handshake: Buffer.from(step.send) });
          if (step.sealed) stream.write({ sealed: Buffer.from(step.sealed) });
          if (step.error) return finish();
          if (step.done) {
            peerKey = step.done.peerPublicKey;
            channel = new SealedChannel(step.done, { logger: o.logger, logMeta: { node: step.done.peerId } });
          }
          return;
        }
        if (frame.frame !== 'sealed' || !frame.sealed || !channel) {
          // Nothing but the handshake is accepted before a session exists: a node without a
          // valid session never receives a job and can never complete one.
          log.failure(new ConclaveError('ORCH-NET-603', { detail: `${frame.frame ?? 'empty'} frame outside an established session` }), {}, 'warn');
          return finish();
        }
        // After either side closed, the peer's last frames (its own CLOSE) have nothing to say.
        if (channel.state !== 'open') return;
        const opened = channel.open(frame.sealed);
        if (opened.kind === 'rekey') return;
        if (opened.kind === 'close') {
          lost(`node closed the session${opened.detail ? `: ${opened.detail}` : ''}`);
          return;
        }
        const message = decodeNodeMessage(opened.data);
        if (session) {
          session.receive(message);
          return;
        }
        const register = message.body === 'register' ? message.register : null;
        const nodeId = channel.peerId;
        if (!register || register.nodeId !== nodeId) {
          // The node id is derived from the key the node proved; a Register naming another id is refused.
          const err = new ConclaveError('ORCH-NET-603', { detail: `first sealed message must be a Register for node ${nodeId}`, data: { peer } });
          new SealedTransport(stream, channel).end(err);
          log.failure(err, {}, 'warn');
          return finish();
        }
        clearTimeout(deadline);
        session = openSession(new SealedTransport(stream, channel), register, peerKey ? fingerprint(peerKey) : '');
        await o.registry.add(session);
        session.logger.info('NET', 'node registered', {
          name: session.name, slots: session.slots, backends: session.backends.join(','), models: session.storedModels.size,
          pendingResults: register.pendingResults.length, fingerprint: session.fingerprint,
        });
      }
    },
  };

  function openSession(transport: SealedTransport, register: Register__Output, nodeFingerprint: string): NodeSession {
    const log = o.logger.child({ node: register.nodeId });
    const session = new NodeSession(transport, register, log, nodeFingerprint);
    const end = (reason: string) => session.close(new ConclaveError('ORCH-NET-602', { detail: reason, data: { node: session.id } }));
    session.on('message', (message) => {
      if (message.body === 'fetchModel' && message.fetchModel) void sendModel(session, message.fetchModel, log);
      else if (message.body === 'goodbye') end(`node said goodbye: ${message.goodbye?.reason ?? ''}`);
    });
    session.send({
      registered: { nodeId: session.id, heartbeatIntervalMs: o.heartbeatIntervalMs, orchestratorVersion: o.version },
    });
    return session;
  }

  async function sendModel(session: NodeSession, request: FetchModel__Output, log: Logger): Promise<void> {
    const { sha256, offset } = request;
    try {
      let sent = 0;
      for await (const chunk of o.models.readChunks(sha256, offset)) {
        if (session.isClosed) return;
        const last = chunk.offset + chunk.data.byteLength >= chunk.totalSize;
        session.send({ modelChunk: { sha256, offset: chunk.offset, data: chunk.data, totalSize: chunk.totalSize, last } });
        sent += chunk.data.byteLength;
        await session.drained();
      }
      if (sent === 0) session.send({ modelChunk: { sha256, offset, data: Buffer.alloc(0), totalSize: offset, last: true } });
      log.debug('LOAD', 'model sent to node', { sha256, offset, bytes: sent });
    } catch (err) {
      const error = isConclaveError(err) ? err : new ConclaveError('ORCH-LOAD-103', { detail: String(err), cause: err });
      log.failure(error, { sha256 }, 'warn');
      session.send({ modelChunk: { sha256, offset, last: true, error: wireError(error) } });
    }
  }
}

/** `ipv4:1234` → `ipv4`, `[::1]:1234` → `::1`: the rate limiter counts per host, not per connection. */
function peerHost(peer: string): string {
  const bracket = /^\[(.*)\]:\d+$/.exec(peer);
  if (bracket?.[1]) return bracket[1];
  const colon = peer.lastIndexOf(':');
  return colon > 0 && peer.indexOf(':') === colon ? peer.slice(0, colon) : peer;
}
