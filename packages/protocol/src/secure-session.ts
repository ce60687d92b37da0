import { ConclaveError } from '@conclave/common/core';
import type { ErrorCode, Logger, LogMeta } from '@conclave/common/core';
import { closeFailureOf } from './secure/auth-failure.js';
import type { EstablishedSession, HandshakeInitiator, HandshakeResponder, HandshakeStep } from './secure/handshake.js';
import { isReject } from './secure/handshake-messages.js';
import { SealedChannel } from './secure/sealed-channel.js';

/** One frame of NodeGateway.Session, either way: handshake bytes, or a sealed frame. */
export interface SessionFrame {
  frame?: 'handshake' | 'sealed' | 'message' | undefined;
  handshake?: Uint8Array | null | undefined;
  sealed?: Uint8Array | null | undefined;
}

/**
 * What a secure session runs over: the gRPC duplex stream on either side (see
 * `grpcFrameStream`), or an in-memory pair in tests (`inMemoryFrameStreams`).
 */
export interface FrameStream {
  /** Returns false when the buffer is full: wait for `drain`. */
  write(frame: { handshake: Uint8Array } | { sealed: Uint8Array }): boolean;
  /**
   * Half-close: what was written still goes out. With `error` the session ended in a failure: a
   * gRPC server ends the call with that error's status (`grpcFrameStream`); without, with OK.
   */
  end(error?: ConclaveError): void;
  /** Drops the stream now (a peer that lingers after `end`). */
  destroy(): void;
  on(event: 'data', listener: (frame: SessionFrame) => void): void;
  on(event: 'end' | 'drain', listener: () => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
  off(event: 'drain', listener: () => void): void;
}

export type SecureSessionState = 'handshaking' | 'open' | 'closed';

/** The side of the handshake this end takes: the node initiates, the orchestrator responds. */
export type HandshakeSide = { role: 'initiator'; handshake: HandshakeInitiator } | { role: 'responder'; handshake: HandshakeResponder };

/** The codes this end gives what goes wrong on its stream (ORCH-NET-… on the orchestrator, NODE-NET-… on a node). */
export interface SessionErrorCodes {
  /** The stream failed under the session. */
  failed: ErrorCode;
  /** The stream ended, or the peer closed the session without naming a failure. */
  ended: ErrorCode;
  /** The peer broke the protocol: a frame out of place, a message that does not decode. */
  protocol: ErrorCode;
}

export interface SecureSessionOptions<Send, Receive> {
  stream: FrameStream;
  side: HandshakeSide;
  encode: (message: Send) => Uint8Array;
  decode: (bytes: Uint8Array) => Receive;
  codes: SessionErrorCodes;
  /** Who is at the other end, for messages (`node`, `orchestrator`). */
  peerName: string;
  logger: Logger;
  logMeta?: LogMeta;
  /** Runs once the keys are agreed, before any sealed frame is read; a rejection closes the session. */
  onEstablished?: (established: EstablishedSession) => void | Promise<void>;
  /**
   * Every message the peer sends, in order: the next frame is not read until the promise this
   * returns settles. A rejection closes the session with that error.
   */
  onMessage: (message: Receive) => void | Promise<void>;
  /** Called once, with why the session ended (the peer's coded reason when it sent one). */
  onClosed: (reason: ConclaveError) => void;
  /** How long a half-closed stream may linger before it is dropped. @default 1000 */
  lingerMs?: number;
}

const DEFAULT_LINGER_MS = 1_000;

/**
 * One end of NodeGateway.Session, the same on the node and on the orchestrator: the
 * three-message handshake, then sealed frames both ways (docs/protocol.md). Frames are
 * handled strictly in order, because the handshake steps and the callbacks are
 * asynchronous. Frames in the clear after the handshake, or sealed ones before it, end
 * the session. Ending it sends a sealed CLOSE naming the failure, when there is one, so
 * the peer can trust the reason (a revoked node stops retrying; a lost one retries).
 */
export class SecureSession<Send, Receive> {
  private stateValue: SecureSessionState = 'handshaking';
  private channel: SealedChannel | undefined;
  private inbound: Promise<void> = Promise.resolve();
  private readonly handshakeTimer: NodeJS.Timeout;
  /** The last write filled the stream's buffer. */
  private full = false;
  /** `writable()` calls still waiting: a closed session releases them. */
  private readonly writableWaiters = new Set<() => void>();

  constructor(private readonly o: SecureSessionOptions<Send, Receive>) {
    const { stream, side } = o;
    // The deadline runs from now, the stream's opening, in wall time: the handshake's own clock
    // may be skewed (inside the window) or a test's, and must not stretch or cut it.
    this.handshakeTimer = setTimeout(() => {
      const expired = side.handshake.expire();
      if (expired) this.terminate(expired, { notify: false });
    }, side.handshake.timeoutMs);
    stream.on('data', (frame) => {
      this.inbound = this.inbound.then(() => this.onFrame(frame)).catch((err: unknown) => this.failed(err));
    });
    // Behind the frames that came before: a REJECT or CLOSE followed by the call's status must be
    // read first, or the session would end as a broken stream instead of with the peer's reason.
    stream.on('error', (err) => this.afterInbound(() => this.terminate(this.error('failed', err.message, err), { notify: false })));
    stream.on('end', () => this.afterInbound(() => this.terminate(this.error('ended', `stream ended by ${o.peerName}`), { notify: false })));
    if (side.role === 'initiator') stream.write({ handshake: side.handshake.start() });
  }

  get state(): SecureSessionState {
    return this.stateValue;
  }

  /** The session id and peer id, once the handshake is done. */
  get keys(): { sessionId: string; peerId: string } | undefined {
    return this.channel ? { sessionId: this.channel.sessionId, peerId: this.channel.peerId } : undefined;
  }

  /** Seals and writes one message; false when it was not sent because the session is not open. */
  send(message: Send): boolean {
    const channel = this.channel;
    if (this.stateValue !== 'open' || !channel || channel.state !== 'open') return false;
    this.full = !this.o.stream.write({ sealed: channel.seal(this.o.encode(message)) });
    return true;
  }

  /** The stream's buffer is full: a bulk sender should wait for `writable()`. */
  get backpressured(): boolean {
    return this.full;
  }

  /** Resolves once the stream's buffer has room again (backpressure for bulk sends), or the session ended. */
  writable(): Promise<void> {
    if (!this.full || this.stateValue === 'closed') return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.o.stream.off('drain', done);
        this.writableWaiters.delete(done);
        this.full = false;
        resolve();
      };
      this.o.stream.on('drain', done);
      this.writableWaiters.add(done);
    });
  }

  /** Ends the session: a sealed CLOSE naming `reason`'s failure (if it has one), then the stream. */
  close(reason: ConclaveError): void {
    this.terminate(reason, { notify: true });
  }

  private afterInbound(run: () => void): void {
    this.inbound = this.inbound.then(run, run);
  }

  private async onFrame(frame: SessionFrame): Promise<void> {
    if (this.stateValue === 'closed') return;
    const { side } = this.o;
    if (frame.frame === 'handshake' && frame.handshake && this.channel && side.role === 'initiator') {
      // A node that sent FINISH may still be refused by a REJECT (the orchestrator refused FINISH
      // itself); the handshake reads it, and anything else there is malformed. Logged by the handshake.
      const step = await side.handshake.next(frame.handshake);
      const error = step.error ?? this.error('protocol', 'handshake message after FINISH');
      return this.terminate(error, { notify: !isReject(frame.handshake) });
    }
    if (frame.frame === 'handshake' && frame.handshake && !this.channel) {
      const step: HandshakeStep = await side.handshake.next(frame.handshake);
      if (step.send) this.o.stream.write({ handshake: step.send });
      if (step.sealed) this.o.stream.write({ sealed: step.sealed });
      if (step.error) return this.terminate(step.error, { notify: false });
      if (step.done) {
        clearTimeout(this.handshakeTimer);
        this.channel = new SealedChannel(step.done, { logger: this.o.logger, ...(this.o.logMeta ? { logMeta: this.o.logMeta } : {}) });
        this.stateValue = 'open';
        await this.o.onEstablished?.(step.done);
      }
      return;
    }
    const channel = this.channel;
    if (frame.frame !== 'sealed' || !frame.sealed || !channel) {
      // Nothing but the handshake is accepted before a session exists, and nothing in the clear
      // after; a peer's REJECT is never answered, anything else is told why in a CLOSE.
      const error = this.error('protocol', `${frame.frame ?? 'empty'} frame outside an established session`);
      return this.terminate(error, { notify: !(frame.frame === 'handshake' && frame.handshake && isReject(frame.handshake)) });
    }
    // After either side closed, the peer's last frames (its own CLOSE) have nothing to say.
    if (channel.state !== 'open') return;
    const opened = channel.open(frame.sealed);
    if (opened.kind === 'rekey') return;
    if (opened.kind === 'close') {
      const detail = `${this.o.peerName} closed the session${opened.detail ? `: ${opened.detail}` : ''}`;
      return this.terminate(opened.error ?? this.error('ended', detail), { notify: false });
    }
    await this.o.onMessage(this.o.decode(opened.data));
  }

  private failed(err: unknown): void {
    const error = err instanceof ConclaveError ? err : this.error('protocol', err instanceof Error ? err.message : String(err), err);
    this.terminate(error, { notify: true });
  }

  private error(kind: keyof SessionErrorCodes, detail: string, cause?: unknown): ConclaveError {
    return new ConclaveError(this.o.codes[kind], { detail, ...(cause === undefined ? {} : { cause }) });
  }

  /**
   * `notify`: tell the peer why in a sealed CLOSE, whose reason `closeFailureOf` picks (orderly
   * for shutdowns, the failure's byte for everything the reason table names).
   */
  private terminate(reason: ConclaveError, { notify }: { notify: boolean }): void {
    if (this.stateValue === 'closed') return;
    this.stateValue = 'closed';
    clearTimeout(this.handshakeTimer);
    const { stream } = this.o;
    const channel = this.channel;
    const failure = closeFailureOf(reason);
    try {
      // Not when the stream or the peer ended it: there is no one left to tell. The caller
      // logs the reason; the channel's own failures were logged by the channel.
      if (notify && channel) {
        const close = channel.close(failure, `${reason.code} ${reason.message}`);
        if (close) stream.write({ sealed: close });
      }
      // Half-close, so a REJECT or CLOSE just written still goes out; cut the stream if the peer
      // lingers. A failure ends a gRPC call with its status, an orderly close with OK.
      stream.end(failure === undefined ? undefined : reason);
    } catch {
      // The stream may already be gone; there is no one left to tell.
    }
    setTimeout(() => stream.destroy(), this.o.lingerMs ?? DEFAULT_LINGER_MS).unref();
    for (const waiter of [...this.writableWaiters]) waiter();
    this.o.onClosed(reason);
  }
}
