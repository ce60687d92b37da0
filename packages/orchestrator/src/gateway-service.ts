import { ConclaveError, isConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type * as grpc from '@grpc/grpc-js';
import {
  DEFAULT_MAX_PLAINTEXT_BYTES, SecureSession, createResponder, encodeReject, wireReasonOf, decodeNodeMessage, encodeOrchestratorMessage, fingerprint,
  grpcFrameStream, jobErrorOf,
} from '@conclave/protocol';
import type {
  EnrollmentHooks, FetchModel__Output, HandshakeRateLimiter, Identity, JobResult__Output, NodeFrame__Output, NodeGatewayHandlers,
  NodeMessage__Output, OrchestratorFrame, OrchestratorMessage, RotationStatement,
} from '@conclave/protocol';
import { MAX_HANDSHAKE_MESSAGE_BYTES, UnauthenticatedStreams, sourceOf } from './gateway-admission.js';
import { toServiceError } from './grpc-errors.js';
import { setCallReceiveLimit } from './grpc-message-limit.js';
import type { ModelRegistry } from './model-registry.js';
import type { NodeRegistry } from './node-registry.js';
import { NodeSession } from './node-session.js';
import type { ChatApi } from './chat/chat-api.js';
import { NodeChatEndpoint } from './chat/node-chat-endpoint.js';
import { NodeLogIntake } from './logs/node-log-intake.js';
import type { NodeLogIntakeOptions } from './logs/node-log-intake.js';

/** After the handshake, the node's first sealed message must be its Register, within this long. */
export const REGISTER_TIMEOUT_MS = 5_000;

/**
 * Model transfers one node may have in flight: each holds a file open. A node that asks for
 * more gets ORCH-LOAD-104 (the agent fetches one model at a time per job and retries).
 */
export const MAX_FETCHES_PER_NODE = 4;

/**
 * Model transfers in flight across the fleet, so open files stay bounded however many nodes
 * fetch at once; more wait their turn.
 */
export const MAX_FETCHES = 64;


/** The largest message the gateway reads from an authenticated node: a sealed frame of the largest plaintext. */
export const MAX_SEALED_MESSAGE_BYTES = DEFAULT_MAX_PLAINTEXT_BYTES + 1024;

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
  /** The most slots a node is given, whatever it claims. */
  maxSlotsPerNode: number;
  /** A result no job of the node's session waits for (the dispatcher records it). */
  onUnmatchedResult: (session: NodeSession, result: JobResult__Output) => void;
  /**
   * How long a model transfer waits for the node to take the next chunk before it is abandoned
   * and its file closed (ORCH-LOAD-105): a node that stops reading must not hold files open for ever.
   */
  modelTransferStallMs: number;
  /** The group chat: each registered node joins `fleet` and speaks it over its session. */
  chat?: ChatApi;
  /** Whether Redis is connected now: chat requests are refused at once when not. @default always */
  redisAvailable?: () => boolean;
  /** Per-source and total caps on handshakes in progress. @default the gateway's limits */
  unauthenticated?: UnauthenticatedStreams;
  /** The fleet log store's intake settings: each session's shipped records go there. @default logs are not taken */
  logs?: Pick<NodeLogIntakeOptions, 'store' | 'metrics' | 'ratePerSecond'>;
}

/**
 * NodeGateway.Session: one secure session per node stream (the handshake, then sealed
 * frames; `SecureSession` in protocol), whose first sealed message must be the node's
 * Register; after it, every message goes to the node's NodeSession. A failure ends only
 * this stream, with a coded AUTH error logged once by the handshake or the channel.
 *
 * Until the peer has authenticated, a stream counts against its source's and the gateway's
 * handshake caps and reads only handshake-sized messages; the registry checks the node's
 * enrollment again when it registers, and a revocation closes its handshakes too.
 */
export function createGatewayService(o: GatewayServiceOptions): NodeGatewayHandlers {
  const unauthenticated = o.unauthenticated ?? new UnauthenticatedStreams();
  const fetchSlots = new Semaphore(MAX_FETCHES);
  let limitUnavailableLogged = false;
  return {
    Session(call: grpc.ServerDuplexStream<NodeFrame__Output, OrchestratorFrame>) {
      const peer = call.getPeer();
      const source = sourceOf(peer);
      const log = o.logger.child({ peer });
      // Before anything is read: a source over its cap costs the gateway nothing more.
      let releaseAdmission: () => void;
      try {
        releaseAdmission = unauthenticated.admit(source);
      } catch (err) {
        log.debug('AUTH', 'stream refused before its handshake', { err });
        // As the spec has it for a source over its limit: a REJECT (rate-limited), never answered,
        // then the call's status (RESOURCE_EXHAUSTED, the coded message) ends it.
        call.write({ handshake: encodeReject(wireReasonOf('rate-limited'), Date.now()) });
        call.emit('error', Object.assign(new Error(), toServiceError(err, log)));
        return;
      }
      if (!setCallReceiveLimit(call, MAX_HANDSHAKE_MESSAGE_BYTES) && !limitUnavailableLogged) {
        limitUnavailableLogged = true;
        log.warn('AUTH', 'this grpc-js cannot cap handshake messages; the server-wide message limit applies', {});
      }
      const responder = createResponder({
        identity: o.identity, hooks: o.enrollment, rateLimiter: o.rateLimiter, source, logger: o.logger,
        logMeta: { peer }, ...(o.rotations ? { rotations: o.rotations } : {}),
      });
      let node: NodeSession | undefined;
      let peerKey: Uint8Array | undefined;
      let registerTimer: NodeJS.Timeout | undefined;
      let untrack: (() => void) | undefined;
      let fetches = 0;
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
          // Authenticated: sealed frames may be as large as a job, and the handshake slot is free.
          setCallReceiveLimit(call, MAX_SEALED_MESSAGE_BYTES);
          releaseAdmission();
          // From here until it is registered, a revocation of this node closes this stream too.
          untrack = o.registry.trackPending(established.peerId, { close: (reason) => secure.close(reason) });
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
          releaseAdmission();
          untrack?.();
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
        let chatEndpoint: NodeChatEndpoint | undefined;
        // Before the session, which reads its figures. Its acks go through the session made next:
        // an ack answers a batch the session received, so the session exists by then.
        const logIntake = o.logs
          ? new NodeLogIntake({
            ...o.logs, nodeId: request.nodeId, nodeName: request.name, logger: o.logger.child({ node: request.nodeId }),
            ack: (upToSeq) => session.send({ logAck: { upToSeq } }),
          })
          : undefined;
        const session = new NodeSession({
          link: secure,
          register: request,
          logger: o.logger.child({ node: request.nodeId }),
          address: peer,
          fingerprint: peerKey ? fingerprint(peerKey) : '',
          maxSlots: o.maxSlotsPerNode,
          onFetchModel: (s, fetch) => {
            if (fetches >= MAX_FETCHES_PER_NODE) {
              const error = new ConclaveError('ORCH-LOAD-104', { detail: `${fetches} in flight (limit ${MAX_FETCHES_PER_NODE})`, data: { node: s.id } });
              s.logger.debug('LOAD', 'model fetch refused', { code: error.code, sha256: fetch.sha256 });
              s.send({ modelChunk: { sha256: fetch.sha256, offset: fetch.offset, last: true, error: jobErrorOf(error) } });
              return;
            }
            fetches += 1;
            void sendModel(s, fetch, s.logger).finally(() => {
              fetches -= 1;
            });
          },
          onUnmatchedResult: o.onUnmatchedResult,
          onChat: (chatMessage) => chatEndpoint?.receive(chatMessage),
          onLogs: (_s, batch) => logIntake?.receive(batch),
          ...(logIntake ? { logShipping: () => logIntake.figures() } : {}),
        });
        if (logIntake) session.once('closed', () => logIntake.close());
        if (o.chat) {
          const endpoint = new NodeChatEndpoint({
            chat: o.chat, session, logger: session.logger.withPrefix('CHAT'), redisAvailable: o.redisAvailable ?? (() => true),
          });
          chatEndpoint = endpoint;
          session.once('closed', () => endpoint.close());
        }
        // Known to onClosed before anything is awaited: a stream that ends during the registry's
        // Redis calls closes this session, and the registry then leaves it out.
        node = session;
        // The registry checks the node's enrollment once more (a revocation may have come
        // since the handshake) and lists it; only then is the node told it is registered.
        const listed = await o.registry.add(session);
        untrack?.();
        if (!listed) return;
        session.send({ registered: { nodeId: session.id, heartbeatIntervalMs: o.heartbeatIntervalMs, orchestratorVersion: o.version } });
        void chatEndpoint?.start();
        session.logger.info('NET', 'node registered', {
          name: session.name, slots: session.slots, backends: session.backends.join(','), models: session.storedModels.size,
          pendingResults: request.pendingResults.length, fingerprint: session.fingerprint,
        });
      }
    },
  };

  async function sendModel(session: NodeSession, request: FetchModel__Output, log: Logger): Promise<void> {
    const { sha256, offset } = request;
    const release = await fetchSlots.acquire();
    try {
      if (session.isClosed) return;
      let sent = 0;
      // Leaving the loop (return or throw) closes the model file.
      for await (const chunk of o.models.readChunks(sha256, offset)) {
        if (session.isClosed) return;
        const last = chunk.offset + chunk.data.byteLength >= chunk.totalSize;
        session.send({ modelChunk: { sha256, offset: chunk.offset, data: chunk.data, totalSize: chunk.totalSize, last } });
        sent += chunk.data.byteLength;
        if (!(await drainedWithin(session, o.modelTransferStallMs))) {
          throw new ConclaveError('ORCH-LOAD-105', { detail: `no progress for ${o.modelTransferStallMs} ms after ${sent} bytes`, data: { sha256 } });
        }
      }
      if (sent === 0) session.send({ modelChunk: { sha256, offset, data: Buffer.alloc(0), totalSize: offset, last: true } });
      log.debug('LOAD', 'model sent to node', { sha256, offset, bytes: sent });
    } catch (err) {
      const error = isConclaveError(err) ? err : new ConclaveError('ORCH-LOAD-103', { detail: String(err), cause: err });
      log.failure(error, { sha256 }, 'warn');
      session.send({ modelChunk: { sha256, offset, last: true, error: jobErrorOf(error) } });
    } finally {
      release();
    }
  }
}

/** Whether the session's stream took what was written within `ms` (or the session ended). */
async function drainedWithin(session: NodeSession, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([session.drained().then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** At most `limit` holders at once; the rest wait in order. */
class Semaphore {
  private held = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  async acquire(): Promise<() => void> {
    if (this.held >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.held += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter; otherwise it is freed.
      if (next) next();
      else this.held -= 1;
    };
  }
}

