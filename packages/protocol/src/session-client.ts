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

export type SessionClientState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'closed';

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
}

export interface SessionClientEvents {
  connected: [Registered__Output];
  disconnected: [ConclaveError];
  message: [OrchestratorMessage__Output];
  state: [SessionClientState];
}

type SessionCall = grpc.ClientDuplexStream<NodeFrame, OrchestratorFrame__Output>;

/**
 * The node's end of NodeGateway.Session: dials the orchestrator (boards sit behind NAT),
 * registers, sends heartbeats from the main thread on a timer (inference runs elsewhere, so
 * they are never late), and reconnects with full-jitter backoff whenever the stream ends.
 */
export class SessionClient extends EventEmitter<SessionClientEvents> {
  private readonly client: NodeGatewayClient;
  private readonly backoff = new Backoff();
  private call: SessionCall | undefined;
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
    this.call.write({ message });
    return true;
  }

  async close(reason = 'node shutting down'): Promise<void> {
    if (this.currentState === 'closed') return;
    const call = this.call;
    if (call && this.currentState === 'connected') call.write({ message: { goodbye: { reason } } });
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
    let ended = false;
    const end = (err: ConclaveError) => {
      if (ended) return;
      ended = true;
      if (this.call === call) this.call = undefined;
      call.removeAllListeners('data');
      call.cancel();
      this.lost(err);
    };
    call.on('data', (frame: OrchestratorFrame__Output) => {
      const message = frame.message;
      if (!message) return;
      if (message.body === 'registered' && message.registered) {
        this.onRegistered(message.registered);
        return;
      }
      if (message.body === 'goodbye') {
        end(new ConclaveError('NODE-NET-602', { detail: message.goodbye?.reason ?? 'goodbye' }));
        return;
      }
      this.emit('message', message);
    });
    call.on('error', (err: Error) => end(new ConclaveError('NODE-NET-601', { detail: err.message, cause: err })));
    call.on('end', () => end(new ConclaveError('NODE-NET-602', { detail: 'stream ended' })));
    call.write({ message: { register } });
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

  private lost(err: ConclaveError): void {
    clearInterval(this.heartbeatTimer);
    if (this.currentState === 'closed') return;
    const wasConnected = this.currentState === 'connected';
    this.setState('backoff');
    const delayMs = this.backoff.next();
    // Log the first failure of a streak at warn, the retries at debug: an offline board
    // should not fill its SSD with the same line.
    if (wasConnected || this.backoff.attempt <= 1) this.options.logger.failure(err, { delayMs }, 'warn');
    else this.options.logger.debug('NET', 'reconnect attempt failed', { delayMs, err });
    if (wasConnected) this.emit('disconnected', err);
    this.reconnectTimer = setTimeout(() => void this.connect(), delayMs);
  }
}
