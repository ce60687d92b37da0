import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { Backoff, ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { createGatewayClient } from './clients.js';
import type { ClientOptions } from './clients.js';
import type { Heartbeat } from './generated/conclave/v1/Heartbeat.js';
import type { NodeFrame } from './generated/conclave/v1/NodeFrame.js';
import type { NodeGatewayClient } from './generated/conclave/v1/NodeGateway.js';
import type { NodeMessage } from './generated/conclave/v1/NodeMessage.js';
import type { OrchestratorFrame__Output } from './generated/conclave/v1/OrchestratorFrame.js';
import type { OrchestratorMessage__Output } from './generated/conclave/v1/OrchestratorMessage.js';
import type { Register } from './generated/conclave/v1/Register.js';
import type { Registered__Output } from './generated/conclave/v1/Registered.js';
import { decodeOrchestratorMessage, encodeNodeMessage } from './message-codec.js';
import { failureOf } from './secure/auth-failure.js';
import type { AuthFailure } from './secure/auth-failure.js';
import { createInitiator } from './secure/handshake.js';
import type { HandshakeInitiator } from './secure/handshake.js';
import type { Identity } from './secure/identity.js';
import type { PinSet } from './secure/pins.js';
import { SealedChannel } from './secure/sealed-channel.js';

export type SessionClientState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'closed';

/**
 * Authentication failures an operator must act on: retrying would fail the same way (or,
 * for a substituted orchestrator key, talk to an impostor). The agent stops and says why.
 * Everything else (a pending approval, a rate limit, a broken frame) is retried with backoff.
 */
export const FATAL_AUTH_FAILURES: ReadonlySet<AuthFailure> = new Set<AuthFailure>([
  'pin-mismatch', 'token-refused', 'denied', 'revoked', 'unknown-node', 'key-mismatch', 'clock-skew', 'unsupported',
  'key-file', 'key-file-mode', 'join-string', 'pins-file',
]);

export interface SessionClientOptions extends ClientOptions {
  /** Orchestrator `host:port`. */
  address: string;
  logger: Logger;
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
  /** Called after each session is established (persist added pins; forget a used token). */
  onEstablished?: (info: { addedPins: string[]; sessionId: string; orchestrator: string }) => void | Promise<void>;
}

export interface SessionClientEvents {
  connected: [Registered__Output];
  /** An authentication failure that retrying cannot fix; the client has stopped. */
  fatal: [ConclaveError];
  disconnected: [ConclaveError];
  message: [OrchestratorMessage__Output];
  state: [SessionClientState];
}

type SessionCall = grpc.ClientDuplexStream<NodeFrame, OrchestratorFrame__Output>;

/** One attempt at a session: its stream, its handshake, and how it ends. */
interface Connection {
  call: SessionCall;
  handshake: HandshakeInitiator;
  /** Sent, sealed, right behind the handshake's last message. */
  register: Register;
  end: (err: ConclaveError) => void;
  handshakeTimer: NodeJS.Timeout;
}

/**
 * The node's end of NodeGateway.Session: dials the orchestrator (boards sit behind NAT),
 * registers, sends heartbeats from the main thread on a timer (inference runs elsewhere, so
 * they are never late), and reconnects with full-jitter backoff whenever the stream ends.
 */
export class SessionClient extends EventEmitter<SessionClientEvents> {
  private readonly client: NodeGatewayClient;
  private readonly backoff = new Backoff();
  private call: SessionCall | undefined;
  private channel: SealedChannel | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private currentState: SessionClientState = 'idle';
  private heartbeatIntervalMs: number;

  constructor(private readonly options: SessionClientOptions) {
    super();
    this.client = createGatewayClient(options.address, options);
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 1000;
  }

  get state(): SessionClientState {
    return this.currentState;
  }

  start(): void {
    if (this.currentState !== 'idle') return;
    void this.connect();
  }

  /** Sends a message if connected; returns false when it could not be sent (offline). */
  send(message: NodeMessage): boolean {
    if (this.currentState !== 'connected' || !this.call) return false;
    return this.sendSealed(this.call, message);
  }

  private sendSealed(call: SessionCall, message: NodeMessage): boolean {
    const channel = this.channel;
    if (!channel || channel.state !== 'open') return false;
    call.write({ sealed: Buffer.from(channel.seal(encodeNodeMessage(message))) });
    return true;
  }

  async close(reason = 'node shutting down'): Promise<void> {
    if (this.currentState === 'closed') return;
    const call = this.call;
    if (call && this.currentState === 'connected') {
      this.sendSealed(call, { goodbye: { reason } });
      const close = this.channel?.close();
      if (close) call.write({ sealed: Buffer.from(close) });
    }
    this.setState('closed');
    this.stopTimers();
    call?.end();
    this.call = undefined;
    this.client.close();
  }

  private setState(next: SessionClientState): void {
    if (this.currentState === next || this.currentState === 'closed') return;
    this.currentState = next;
    this.options.logger.debug('NET', 'session state', { state: next });
    this.emit('state', next);
  }

  private stopTimers(): void {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.reconnectTimer);
  }

  private async connect(): Promise<void> {
    if (this.currentState === 'closed') return;
    this.setState('connecting');
    let register: Register;
    try {
      register = await this.options.register();
    } catch (err) {
      this.lost(new ConclaveError('NODE-NET-601', { detail: `could not build registration: ${String(err)}`, cause: err }));
      return;
    }
    const call = this.client.Session();
    this.call = call;
    this.channel = undefined;
    const log = this.options.logger;
    const handshake: HandshakeInitiator = createInitiator({
      identity: this.options.identity,
      pins: this.options.pins,
      logger: log,
      ...(this.options.now ? { now: this.options.now } : {}),
      ...(this.options.token?.() ? { token: this.options.token() } : {}),
    });
    let ended = false;
    const end = (err: ConclaveError) => {
      if (ended) return;
      ended = true;
      clearTimeout(handshakeTimer);
      if (this.call === call) this.call = undefined;
      call.removeAllListeners('data');
      call.end(); // Half-close, so a REJECT just written still goes out (cancel drops it); cut it if the peer lingers.
      setTimeout(() => call.cancel(), 1_000).unref();
      const failure = failureOf(err);
      if (failure && FATAL_AUTH_FAILURES.has(failure)) this.fatal(err);
      else this.lost(err);
    };
    const handshakeTimer = setTimeout(() => {
      const err = handshake.expire();
      if (err) end(err);
    }, Math.max(0, handshake.deadlineMs - Date.now()));

    // Frames are handled strictly in order: the handshake steps are asynchronous.
    let queue = Promise.resolve();
    call.on('data', (frame: OrchestratorFrame__Output) => {
      queue = queue.then(() => this.onFrame(frame, { call, handshake, register, end, handshakeTimer })).catch((err: unknown) => {
        end(err instanceof ConclaveError ? err : new ConclaveError('NODE-NET-602', { detail: String(err), cause: err }));
      });
    });
    call.on('error', (err: Error) => end(new ConclaveError('NODE-NET-601', { detail: err.message, cause: err })));
    call.on('end', () => end(new ConclaveError('NODE-NET-602', { detail: 'stream ended' })));
    call.write({ handshake: Buffer.from(handshake.start()) });
  }

  private async onFrame(frame: OrchestratorFrame__Output, connection: Connection): Promise<void> {
    const { call, handshake, register, end, handshakeTimer } = connection;
    if (frame.frame === 'handshake' && frame.handshake) {
      const step = await handshake.next(frame.handshake);
      if (step.send) call.write({ handshake: Buffer.from(step.send) });
      if (step.error) return end(step.error);
      if (step.done) {
        clearTimeout(handshakeTimer);
        this.channel = new SealedChannel(step.done, { logger: this.options.logger });
        await this.options.onEstablished?.({ addedPins: step.done.addedPins, sessionId: step.done.sessionId, orchestrator: step.done.peerId });
        // Register goes sealed right behind FINISH; the orchestrator answers Registered
        // (accepted) or a sealed CLOSE naming why not.
        this.sendSealed(call, { register });
      }
      return;
    }
    if (frame.frame !== 'sealed' || !frame.sealed || !this.channel) {
      return end(new ConclaveError('NODE-NET-602', { detail: 'unexpected frame before the session was established' }));
    }
    const opened = this.channel.open(frame.sealed);
    if (opened.kind === 'rekey') return;
    if (opened.kind === 'close') {
      return end(opened.error ?? new ConclaveError('NODE-NET-602', { detail: `orchestrator closed the session ${opened.detail}`.trim() }));
    }
    const message = decodeOrchestratorMessage(opened.data);
    if (message.body === 'registered' && message.registered) {
      this.onRegistered(message.registered);
      return;
    }
    if (message.body === 'goodbye') {
      return end(new ConclaveError('NODE-NET-602', { detail: message.goodbye?.reason ?? 'goodbye' }));
    }
    this.emit('message', message);
  }

  private onRegistered(registered: Registered__Output): void {
    this.backoff.reset();
    if (registered.heartbeatIntervalMs > 0) this.heartbeatIntervalMs = registered.heartbeatIntervalMs;
    this.setState('connected');
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => {
      this.send({ heartbeat: { ...this.options.heartbeat(), sentAtMs: Date.now() } });
    }, this.heartbeatIntervalMs);
    this.options.logger.info('NET', 'connected to orchestrator', { address: this.options.address });
    this.emit('connected', registered);
  }

  private fatal(err: ConclaveError): void {
    clearInterval(this.heartbeatTimer);
    if (this.currentState === 'closed') return;
    this.options.logger.error('AUTH', 'cannot join the orchestrator; not retrying', { code: err.code, reason: err.message });
    this.setState('closed');
    this.stopTimers();
    this.client.close();
    this.emit('fatal', err);
  }

  private lost(err: ConclaveError): void {
    clearInterval(this.heartbeatTimer);
    if (this.currentState === 'closed') return;
    const wasConnected = this.currentState === 'connected';
    this.setState('backoff');
    const delayMs = this.backoff.next();
    // Log the first failure of a streak at warn, the retries at debug: an offline board
    // should not fill its SSD with the same line.
    // Authentication failures were already logged, once, by the handshake or the channel.
    const alreadyLogged = failureOf(err) !== undefined;
    if (!alreadyLogged && (wasConnected || this.backoff.attempt <= 1)) this.options.logger.failure(err, { delayMs }, 'warn');
    else this.options.logger.debug('NET', 'reconnect attempt failed', { delayMs, err });
    if (wasConnected) this.emit('disconnected', err);
    this.reconnectTimer = setTimeout(() => void this.connect(), delayMs);
  }
}
