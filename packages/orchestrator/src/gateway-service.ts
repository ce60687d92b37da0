import { ConclaveError, isConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type * as grpc from '@grpc/grpc-js';
import {
  SecureSession, createResponder, decodeNodeMessage, encodeOrchestratorMessage, fingerprint, grpcFrameStream, jobErrorOf,
} from '@conclave/protocol';
import type {
  EnrollmentHooks, FetchModel__Output, HandshakeRateLimiter, Identity, NodeFrame__Output, NodeGatewayHandlers,
  NodeMessage__Output, OrchestratorFrame, OrchestratorMessage, RotationStatement,
} from '@conclave/protocol';
import type { ModelRegistry } from './model-registry.js';
import type { NodeRegistry } from './node-registry.js';
import { NodeSession } from './node-session.js';

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
 * NodeGateway.Session: one secure session per node stream (the handshake, then sealed
 * frames; `SecureSession` in protocol), whose first sealed message must be the node's
 * Register; after it, every message goes to the node's NodeSession. A failure ends only
 * this stream, with a coded AUTH error logged once by the handshake or the channel.
 */
export function createGatewayService(o: GatewayServiceOptions): NodeGatewayHandlers {
  return {
    Session(call: grpc.ServerDuplexStream<NodeFrame__Output, OrchestratorFrame>) {
      const peer = call.getPeer();
      const log = o.logger.child({ peer });
      const responder = createResponder({
        identity: o.identity, hooks: o.enrollment, rateLimiter: o.rateLimiter, source: peerHost(peer), logger: o.logger,
        logMeta: { peer }, ...(o.rotations ? { rotations: o.rotations } : {}),
      });
      let node: NodeSession | undefined;
      let peerKey: Uint8Array | undefined;
      let registerTimer: NodeJS.Timeout | undefined;
      const secure = new SecureSession<OrchestratorMessage, NodeMessage__Output>({
        stream: grpcFrameStream(call),
        side: { role: 'responder', handshake: responder },
        encode: encodeOrchestratorMessage,
        decode: decodeNodeMessage,
        codes: { failed: 'ORCH-NET-602', ended: 'ORCH-NET-602', protocol: 'ORCH-NET-603' },
        peerName: 'node',
        logger: o.logger,
        onEstablished: (established) => {
          peerKey = established.peerPublicKey;
          // After the handshake, the node's first sealed message must be its Register.
          registerTimer = setTimeout(() => {
            if (!node) secure.close(new ConclaveError('ORCH-NET-603', { detail: `node did not register within ${REGISTER_TIMEOUT_MS} ms` }));
          }, REGISTER_TIMEOUT_MS);
        },
        onMessage: async (message) => {
          if (node) return node.receive(message);
          await register(message);
        },
        onClosed: (reason) => {
          clearTimeout(registerTimer);
          if (node) node.close(reason);
          // Before a Register: a broken protocol is this peer's to hear about (auth failures were logged by the handshake).
          else if (reason.code === 'ORCH-NET-603') log.failure(reason, {}, 'warn');
        },
      });

      /** The session's opening: a Register for the node id the handshake proved, or the end of it. */
      async function register(message: NodeMessage__Output): Promise<void> {
        const request = message.body === 'register' ? message.register : null;
        const nodeId = secure.keys?.peerId;
        if (!request || request.nodeId !== nodeId) {
          // The node id is derived from the key the node proved; a Register naming another id is refused.
          secure.close(new ConclaveError('ORCH-NET-603', { detail: `first sealed message must be a Register for node ${nodeId ?? ''}`, data: { peer } }));
          return;
        }
        clearTimeout(registerTimer);
        const session = new NodeSession({
          link: secure,
          register: request,
          logger: o.logger.child({ node: request.nodeId }),
          address: peer,
          fingerprint: peerKey ? fingerprint(peerKey) : '',
          onFetchModel: (s, fetch) => void sendModel(s, fetch, s.logger),
        });
        // Known to onClosed before anything is awaited: a stream that ends during the registry's
        // Redis calls closes this session, and the registry then leaves it out.
        node = session;
        session.send({ registered: { nodeId: session.id, heartbeatIntervalMs: o.heartbeatIntervalMs, orchestratorVersion: o.version } });
        await o.registry.add(session);
        session.logger.info('NET', 'node registered', {
          name: session.name, slots: session.slots, backends: session.backends.join(','), models: session.storedModels.size,
          pendingResults: request.pendingResults.length, fingerprint: session.fingerprint,
        });
      }
    },
  };

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
      session.send({ modelChunk: { sha256, offset, last: true, error: jobErrorOf(error) } });
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
