import { Backoff, ConclaveError, toConclaveError } from '@conclave/common';
import type { BackoffOptions, Logger } from '@conclave/common';
import {
  SecureSession, createGatewayClient, createInitiator, decodeOrchestratorMessage, encodeNodeMessage, failureOf, grpcFrameStream,
} from '@conclave/protocol';
import type {
  AssignJob__Output, AuthFailure, CancelJob__Output, ChatDelivery__Output, ChatReplies__Output, ClientOptions, FrameStream, Heartbeat, LogAck__Output,
  Identity, ModelChunk__Output,
  NodeGatewayClient, NodeMessage, OrchestratorMessage__Output, PinSet, Register, Registered__Output, ResultAck__Output,
} from '@conclave/protocol';

export type LinkState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'closed';

/**
 * Authentication failures an operator must act on: retrying would fail the same way (or,
 * for a substituted orchestrator key, talk to an impostor). The agent stops and says why.
 * Everything else (a pending approval, a rate limit, a broken frame) is retried with backoff.
 */
export const FATAL_AUTH_FAILURES: ReadonlySet<AuthFailure> = new Set<AuthFailure>([
  'pin-mismatch', 'token-refused', 'denied', 'revoked', 'unknown-node', 'key-mismatch', 'clock-skew', 'unsupported',
  'key-file', 'key-file-mode', 'join-string', 'pins-file',
]);

/** First reconnect delay ceiling: the DESIGN's transient-network base. */
export const RECONNECT_BASE_MS = 250;
/**
 * No reconnect delay exceeds this. The target is a node back within 10 s of the orchestrator
 * being reachable again: a delay of at most 4 s plus a handshake and Register leaves room,
 * where the shared 30 s cap had nodes come back 20 s late after a partition.
 */
export const RECONNECT_CAP_MS = 4_000;
/** The link's full-jitter backoff. */
export const RECONNECT_BACKOFF: Readonly<Required<Pick<BackoffOptions, 'baseMs' | 'capMs'>>> = Object.freeze({
  baseMs: RECONNECT_BASE_MS,
  capMs: RECONNECT_CAP_MS,
});

/**
 * gRPC's own reconnect backoff under the link's: its default (1 s growing to 120 s) would keep a
 * channel in TRANSIENT_FAILURE, failing each new call at once, long after the orchestrator is back.
 */
export const LINK_CHANNEL_OPTIONS = Object.freeze({
  'grpc.initial_reconnect_backoff_ms': RECONNECT_BASE_MS,
  'grpc.max_reconnect_backoff_ms': RECONNECT_CAP_MS,
});

/**
 * What the node does with each kind of work the orchestrator sends. The link's one
 * switch calls these; a new message kind is one case there and one method here.
 */
export interface OrchestratorMessageHandler {
  assign(job: AssignJob__Output): void;
  cancel(cancel: CancelJob__Output): void;
  modelChunk(chunk: ModelChunk__Output): void;
  resultAck(ack: ResultAck__Output): void;
  /** Answers to the chat requests this session sent, by request id. */
  chatReplies(replies: ChatReplies__Output): void;
  /** Messages of a room this session subscribed to, in seq order. */
  chatDelivery(delivery: ChatDelivery__Output): void;
  /** Shipped log records up to a seq are stored: the spool may forget them. */
  logAck(ack: LogAck__Output): void;
  /** The session is registered: resend what waits for an ack, forget a used token. */
  connected(registered: Registered__Output): void;
  /** A registered session was lost; the link reconnects on its own. */
  disconnected(reason: ConclaveError): void;
  /** An authentication failure that retrying cannot fix; the link has stopped. */
  fatal(reason: ConclaveError): void;
}

export interface OrchestratorLinkOptions extends ClientOptions {
  /** Orchestrator `host:port`. */
  address: string;
  logger: Logger;
  handler: OrchestratorMessageHandler;
  /** Built afresh for every connection: what the node has on disk may have changed. */
  register: () => Register | Promise<Register>;
  /** Built every heartbeat interval. */
  heartbeat: () => Heartbeat;
  /** Used until the orchestrator says otherwise in Registered. @default 1000 */
  heartbeatIntervalMs?: number;
  /** The node's long-term key; the node id is derived from it. */
  identity: Identity;
  /** Orchestrator fingerprints this node trusts. */
  pins: PinSet;
  /** The join token, until the node has enrolled. */
  token?: () => Uint8Array | undefined;
  /** The node's wall clock, as the handshake's skew check sees it. @default Date.now */
  now?: () => number;
  /** Called after each handshake (persist added pins), before the Register goes out. */
  onEstablished?: (info: { addedPins: string[]; sessionId: string; orchestrator: string }) => void | Promise<void>;
  /** Opens one NodeGateway.Session stream. @default a gRPC call to `address` */
  openStream?: () => FrameStream;
  /**
   * Called before a connection attempt while the link has no gRPC channel yet (the first, and
   * each after a failed one): settings to merge into the client options, such as the TLS of a
   * pinned certificate fetched from the orchestrator. A rejection whose code is not retryable
   * (NODE-AUTH-580) stops the link as fatal; others are retried with backoff.
   */
  channel?: () => Promise<ClientOptions>;
  /** Reconnect delays; tests inject `random`. @default RECONNECT_BACKOFF */
  reconnectBackoff?: BackoffOptions;
}

type NodeSecureSession = SecureSession<NodeMessage, OrchestratorMessage__Output>;

/**
 * The node's link to the orchestrator: dials it (boards sit behind NAT), runs one secure
 * session at a time, registers, sends heartbeats from the main thread on a timer
 * (inference runs elsewhere, so they are never late), and reconnects with full-jitter
 * backoff whenever the session ends, except on a failure an operator must fix.
 */
export class OrchestratorLink {
  private client: NodeGatewayClient | undefined;
  private readonly backoff: Backoff;
  private session: NodeSecureSession | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private stateValue: LinkState = 'idle';
  private heartbeatIntervalMs: number;

  constructor(private readonly o: OrchestratorLinkOptions) {
    // With a channel hook the client waits for it, in connect().
    if (!o.openStream && !o.channel) this.client = this.createClient({});
    this.heartbeatIntervalMs = o.heartbeatIntervalMs ?? 1000;
    this.backoff = new Backoff({ ...RECONNECT_BACKOFF, ...o.reconnectBackoff });
  }

  get state(): LinkState {
    return this.stateValue;
  }

  start(): void {
    if (this.stateValue !== 'idle') return;
    void this.connect();
  }

  /** Sends a message if registered; returns false when it could not be sent (offline). */
  send(message: NodeMessage): boolean {
    if (this.stateValue !== 'connected' || !this.session) return false;
    return this.session.send(message);
  }

  async close(reason = 'node shutting down'): Promise<void> {
    if (this.stateValue === 'closed') return;
    const session = this.session;
    const wasConnected = this.stateValue === 'connected';
    this.setState('closed');
    this.stopTimers();
    if (session && wasConnected) session.send({ goodbye: { reason } });
    session?.close(new ConclaveError('NODE-NET-602', { detail: reason }));
    this.session = undefined;
    this.client?.close();
    await Promise.resolve();
  }

  /** A method, not a field read, so a check after an await is not narrowed away by the one before it. */
  private isClosed(): boolean {
    return this.stateValue === 'closed';
  }

  private setState(next: LinkState): void {
    if (this.stateValue === next || this.stateValue === 'closed') return;
    this.stateValue = next;
    this.o.logger.debug('NET', 'session state', { state: next });
  }

  private stopTimers(): void {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.reconnectTimer);
  }

  private createClient(channel: ClientOptions): NodeGatewayClient {
    return createGatewayClient(this.o.address, {
      ...this.o, ...channel, channelOptions: { ...LINK_CHANNEL_OPTIONS, ...this.o.channelOptions, ...channel.channelOptions },
    });
  }

  private openStream(): FrameStream {
    if (this.o.openStream) return this.o.openStream();
    return grpcFrameStream((this.client as NodeGatewayClient).Session());
  }

  private async connect(): Promise<void> {
    if (this.state === 'closed') return;
    this.setState('connecting');
    if (!this.o.openStream && !this.client) {
      let channel: ClientOptions;
      try {
        channel = (await this.o.channel?.()) ?? {};
      } catch (err) {
        if (this.isClosed()) return;
        const coded = toConclaveError(err, 'NODE-NET-601');
        if (coded.entry.retryable) this.lost(coded);
        else this.fatal(coded);
        return;
      }
      if (this.isClosed()) return;
      this.client = this.createClient(channel);
    }
    let register: Register;
    try {
      register = await this.o.register();
    } catch (err) {
      this.lost(new ConclaveError('NODE-NET-601', { detail: `could not build registration: ${String(err)}`, cause: err }));
      return;
    }
    // close() may have run while the registration was being built.
    if (this.isClosed()) return;
    const token = this.o.token?.();
    const handshake = createInitiator({
      identity: this.o.identity,
      pins: this.o.pins,
      logger: this.o.logger,
      ...(this.o.now ? { now: this.o.now } : {}),
      ...(token ? { token } : {}),
    });
    const session: NodeSecureSession = new SecureSession({
      stream: this.openStream(),
      side: { role: 'initiator', handshake },
      encode: encodeNodeMessage,
      decode: decodeOrchestratorMessage,
      codes: { failed: 'NODE-NET-601', ended: 'NODE-NET-602', protocol: 'NODE-NET-605' },
      peerName: 'orchestrator',
      logger: this.o.logger,
      onEstablished: async (done) => {
        await this.o.onEstablished?.({ addedPins: done.addedPins, sessionId: done.sessionId, orchestrator: done.peerId });
        // Register goes sealed right behind FINISH; the orchestrator answers Registered
        // (accepted) or a sealed CLOSE naming why not.
        session.send({ register });
      },
      onMessage: (message) => this.receive(session, message),
      onClosed: (reason) => this.ended(session, reason),
    });
    this.session = session;
  }

  /** Every message the orchestrator sends goes through this one switch. */
  private receive(session: NodeSecureSession, message: OrchestratorMessage__Output): void {
    const { handler } = this.o;
    switch (message.body) {
      case 'registered':
        if (message.registered) this.registered(message.registered);
        return;
      case 'goodbye':
        session.close(new ConclaveError('NODE-NET-602', { detail: message.goodbye?.reason || 'orchestrator said goodbye' }));
        return;
      case 'assign':
        if (message.assign) handler.assign(message.assign);
        return;
      case 'cancel':
        if (message.cancel) handler.cancel(message.cancel);
        return;
      case 'modelChunk':
        if (message.modelChunk) handler.modelChunk(message.modelChunk);
        return;
      case 'resultAck':
        if (message.resultAck) handler.resultAck(message.resultAck);
        return;
      case 'chatReplies':
        if (message.chatReplies) handler.chatReplies(message.chatReplies);
        return;
      case 'chatDelivery':
        if (message.chatDelivery) handler.chatDelivery(message.chatDelivery);
        return;
      case 'logAck':
        if (message.logAck) handler.logAck(message.logAck);
        return;
      case undefined:
        return;
      default: {
        // A new kind in the proto is a compile error here until it has its case.
        const unhandled: never = message.body;
        this.o.logger.debug('NET', 'message of an unknown kind ignored', { kind: String(unhandled) });
      }
    }
  }

  /**
   * Sends a heartbeat at once, between the timer's: a model that moved from the chip to the CPU is
   * news the scheduler should not hear a whole interval late. Nothing is sent while not connected.
   */
  heartbeatNow(): void {
    if (this.stateValue !== 'connected') return;
    this.send({ heartbeat: { ...this.o.heartbeat(), sentAtMs: Date.now() } });
  }

  private registered(registered: Registered__Output): void {
    this.backoff.reset();
    if (registered.heartbeatIntervalMs > 0) this.heartbeatIntervalMs = registered.heartbeatIntervalMs;
    this.setState('connected');
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => this.heartbeatNow(), this.heartbeatIntervalMs);
    this.o.logger.info('NET', 'connected to orchestrator', { address: this.o.address });
    this.o.handler.connected(registered);
  }

  private ended(session: NodeSecureSession, reason: ConclaveError): void {
    if (this.session !== session) return;
    this.session = undefined;
    clearInterval(this.heartbeatTimer);
    if (this.stateValue === 'closed') return;
    const failure = failureOf(reason);
    if (failure && FATAL_AUTH_FAILURES.has(failure)) this.fatal(reason);
    else this.lost(reason);
  }

  private fatal(err: ConclaveError): void {
    this.o.logger.error('AUTH', 'cannot join the orchestrator; not retrying', { code: err.code, reason: err.message });
    this.setState('closed');
    this.stopTimers();
    this.client?.close();
    this.o.handler.fatal(err);
  }

  private lost(err: ConclaveError): void {
    const wasConnected = this.stateValue === 'connected';
    this.setState('backoff');
    const delayMs = this.backoff.next();
    // Log the first failure of a streak at warn, the retries at debug: an offline board
    // should not fill its SSD with the same line.
    // Authentication failures were already logged, once, by the handshake or the channel.
    const alreadyLogged = failureOf(err) !== undefined;
    if (!alreadyLogged && (wasConnected || this.backoff.attempt <= 1)) this.o.logger.failure(err, { delayMs }, 'warn');
    else this.o.logger.debug('NET', 'reconnect attempt failed', { delayMs, err });
    if (wasConnected) this.o.handler.disconnected(err);
    this.reconnectTimer = setTimeout(() => void this.connect(), delayMs);
  }
}
