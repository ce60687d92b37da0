import type { ConclaveError, LogMeta, Logger } from '@conclave/common/core';
import nacl from 'tweetnacl';
import {
  authError,
  failureOfWireReason,
  remoteAuthError,
  WIRE_REASON_NORMAL,
  wireReasonOf,
  type AuthFailure,
  type Role,
} from './auth-failure.js';
import { readU64be, u64be, wipe } from './bytes.js';
import { nextEpochKey } from './key-schedule.js';

/** What a finished handshake hands to the channel: one key per direction, and who the peer is. */
export interface SessionKeys {
  role: Role;
  /** Key for frames this side sends. */
  sendKey: Uint8Array;
  /** Key for frames the peer sends. */
  receiveKey: Uint8Array;
  /** Hex of the first 16 bytes of the final transcript hash; the same on both sides, for logs. */
  sessionId: string;
  /** The final 64-byte transcript hash. */
  transcriptHash: Uint8Array;
  /** The peer's long-term Ed25519 key. */
  peerPublicKey: Uint8Array;
  /** The node id (seen by the orchestrator) or the orchestrator fingerprint (seen by the node). */
  peerId: string;
}

/** Lifecycle: `open` until a CLOSE frame is sent or received (`closed`) or anything fails (`failed`). */
export type ChannelState = 'open' | 'closed' | 'failed';

/** @default 10 minutes: a key never protects more than this much traffic time. */
export const DEFAULT_REKEY_INTERVAL_MS = 10 * 60 * 1000;
/** @default 2^32 frames a key; far below the 2^64 nonce space and any XSalsa20-Poly1305 limit. */
export const DEFAULT_MAX_FRAMES_PER_KEY = 2 ** 32;
/** Counters are kept as exact JS numbers, so no limit above 2^48 is accepted. */
export const MAX_FRAMES_PER_KEY_LIMIT = 2 ** 48;
/** @default 4 MiB, gRPC's default maximum message size. */
export const DEFAULT_MAX_PLAINTEXT_BYTES = 4 * 1024 * 1024;
/** counter u64 big-endian. */
export const FRAME_HEADER_BYTES = 8;
/** Poly1305 tag 16 + kind byte 1. */
export const FRAME_OVERHEAD_BYTES = FRAME_HEADER_BYTES + 16 + 1;
/** Longest detail string a CLOSE frame carries, in bytes. */
export const MAX_CLOSE_DETAIL_BYTES = 256;

export const FrameKind = { data: 1, close: 2, rekey: 3 } as const;
/** Set on a frame after which its sender switches to the next key and restarts its counter at 0. */
export const REKEY_AFTER_FLAG = 0x80;

export interface SealedChannelOptions {
  now?: () => number;
  /** @default DEFAULT_REKEY_INTERVAL_MS */
  rekeyIntervalMs?: number;
  /** @default DEFAULT_MAX_FRAMES_PER_KEY */
  maxFramesPerKey?: number;
  /** @default DEFAULT_MAX_PLAINTEXT_BYTES */
  maxPlaintextBytes?: number;
  /** Receives one line per state change and exactly one line for the failure that ends the session. */
  logger?: Logger;
  logMeta?: LogMeta;
}

export type OpenResult =
  | { kind: 'data'; data: Uint8Array }
  /** A control frame that only moved the peer to its next key. */
  | { kind: 'rekey' }
  /** The peer closed; `error` is set when it closed because of a failure. */
  | { kind: 'close'; failure?: AuthFailure; detail: string; error?: ConclaveError };

/** The 24-byte secretbox nonce: 16 zero bytes ‖ the frame counter as u64 big-endian. */
export function frameNonce(counter: number): Uint8Array {
  const nonce = new Uint8Array(24);
  new DataView(nonce.buffer).setBigUint64(16, BigInt(counter), false);
  return nonce;
}

interface Direction {
  key: Uint8Array;
  /** Next counter to send, or the only counter accepted next. */
  counter: number;
  epoch: number;
  epochStartMs: number;
}

/**
 * A sealed, ordered, bidirectional frame channel over an established session. Frames are
 * `counter ‖ secretbox(kind ‖ body)`; the receiver accepts only the counter it expects next, so
 * replay, reorder and drop all end the session. Each direction rekeys on its own: the sender flags
 * a frame, then both ends of that direction move to `nextEpochKey(key)` with the counter at 0.
 */
export class SealedChannel {
  readonly role: Role;
  readonly sessionId: string;
  readonly peerId: string;
  #state: ChannelState = 'open';
  #failure: ConclaveError | undefined;
  #closeSent = false;
  readonly #send: Direction;
  readonly #receive: Direction;
  readonly #now: () => number;
  readonly #rekeyIntervalMs: number;
  readonly #maxFramesPerKey: number;
  readonly #maxPlaintextBytes: number;
  readonly #logger: Logger | undefined;
  readonly #logMeta: LogMeta;

  constructor(keys: SessionKeys, options: SealedChannelOptions = {}) {
    this.role = keys.role;
    this.sessionId = keys.sessionId;
    this.peerId = keys.peerId;
    this.#now = options.now ?? Date.now;
    this.#rekeyIntervalMs = options.rekeyIntervalMs ?? DEFAULT_REKEY_INTERVAL_MS;
    this.#maxFramesPerKey = options.maxFramesPerKey ?? DEFAULT_MAX_FRAMES_PER_KEY;
    this.#maxPlaintextBytes = options.maxPlaintextBytes ?? DEFAULT_MAX_PLAINTEXT_BYTES;
    if (this.#maxFramesPerKey < 1 || this.#maxFramesPerKey > MAX_FRAMES_PER_KEY_LIMIT) {
      throw new RangeError(`maxFramesPerKey must be in 1..2^48`);
    }
    const now = this.#now();
    this.#send = { key: Uint8Array.from(keys.sendKey), counter: 0, epoch: 0, epochStartMs: now };
    this.#receive = { key: Uint8Array.from(keys.receiveKey), counter: 0, epoch: 0, epochStartMs: now };
    this.#logger = options.logger;
    this.#logMeta = { sessionId: keys.sessionId, peerId: keys.peerId, ...options.logMeta };
  }

  get state(): ChannelState {
    return this.#state;
  }

  /** The error that failed the channel, if it failed. */
  get failure(): ConclaveError | undefined {
    return this.#failure;
  }

  /** Current key epochs (how many times each direction has rekeyed); for metrics and tests. */
  get epochs(): { send: number; receive: number } {
    return { send: this.#send.epoch, receive: this.#receive.epoch };
  }

  /** Seals application bytes into one frame. Throws …-AUTH-533 once the channel is not open. */
  seal(data: Uint8Array): Uint8Array {
    this.#assertOpen();
    if (data.length > this.#maxPlaintextBytes) {
      // The caller's mistake, not the peer's: refuse the frame but keep the session.
      throw authError(this.role, 'frame-size', {
        detail: `${data.length} bytes to seal, limit ${this.#maxPlaintextBytes}`,
        data: { bytes: data.length, limit: this.#maxPlaintextBytes },
      });
    }
    return this.#sealFrame(FrameKind.data, data, false);
  }

  /** A frame that carries nothing but moves this direction to its next key now. */
  rekey(): Uint8Array {
    this.#assertOpen();
    return this.#sealFrame(FrameKind.rekey, new Uint8Array(0), true);
  }

  /**
   * Opens one frame from the peer. Any failure — size, sequence, authentication, layout — fails
   * the channel, logs once, and throws the coded error; later calls throw …-AUTH-533.
   */
  open(frame: Uint8Array): OpenResult {
    this.#assertOpen();
    try {
      return this.#open(frame);
    } catch (err) {
      this.#fail(err as ConclaveError);
      throw err;
    }
  }

  /**
   * Seals a CLOSE frame naming why (no failure = an orderly close) and closes the channel.
   * Also allowed once after the channel failed, so the peer learns the reason; returns
   * undefined when a CLOSE was already sent or the peer already closed.
   */
  close(failure?: AuthFailure, detail = ''): Uint8Array | undefined {
    if (this.#closeSent || this.#state === 'closed') return undefined;
    this.#closeSent = true;
    const reason = failure === undefined ? WIRE_REASON_NORMAL : wireReasonOf(failure);
    const detailBytes = new TextEncoder().encode(detail).subarray(0, MAX_CLOSE_DETAIL_BYTES);
    const body = new Uint8Array(1 + detailBytes.length);
    body[0] = reason;
    body.set(detailBytes, 1);
    const frame = this.#sealFrame(FrameKind.close, body, false);
    if (this.#state === 'open') this.#setState('closed');
    return frame;
  }

  /** Fails the channel from outside (transport lost, timeout); logs `error` once. */
  abort(error: ConclaveError): void {
    if (this.#state !== 'open') return;
    this.#fail(error);
  }

  #sealFrame(kind: number, body: Uint8Array, forceRekey: boolean): Uint8Array {
    const send = this.#send;
    const now = this.#now();
    // Flag the last frame a key may protect, so the counter can never reach the limit and no
    // (key, nonce) pair is ever used twice.
    const rekeyAfter =
      forceRekey || send.counter + 1 >= this.#maxFramesPerKey || now - send.epochStartMs >= this.#rekeyIntervalMs;
    const inner = new Uint8Array(1 + body.length);
    inner[0] = kind | (rekeyAfter ? REKEY_AFTER_FLAG : 0);
    inner.set(body, 1);
    const box = nacl.secretbox(inner, frameNonce(send.counter), send.key);
    const frame = new Uint8Array(FRAME_HEADER_BYTES + box.length);
    frame.set(u64be(BigInt(send.counter)), 0);
    frame.set(box, FRAME_HEADER_BYTES);
    if (rekeyAfter) this.#advance(send, now);
    else send.counter += 1;
    return frame;
  }

  #open(frame: Uint8Array): OpenResult {
    const role = this.role;
    const receive = this.#receive;
    if (frame.length < FRAME_OVERHEAD_BYTES || frame.length > FRAME_OVERHEAD_BYTES + this.#maxPlaintextBytes) {
      throw authError(role, 'frame-size', {
        detail: `frame of ${frame.length} bytes`,
        data: { bytes: frame.length, limit: FRAME_OVERHEAD_BYTES + this.#maxPlaintextBytes },
      });
    }
    const counter = readU64be(frame, 0);
    if (counter !== BigInt(receive.counter)) {
      throw authError(role, 'frame-sequence', {
        detail: `counter ${counter}, expected ${receive.counter}`,
        data: { counter: counter.toString(), expected: receive.counter, epoch: receive.epoch },
      });
    }
    if (receive.counter >= this.#maxFramesPerKey) {
      throw authError(role, 'key-lifetime', { data: { counter: receive.counter, epoch: receive.epoch } });
    }
    const inner = nacl.secretbox.open(frame.subarray(FRAME_HEADER_BYTES), frameNonce(receive.counter), receive.key);
    // tweetnacl signals failure with null, never by throwing: the check is the only guard.
    if (inner === null) {
      throw authError(role, 'frame-auth', { data: { counter: receive.counter, epoch: receive.epoch } });
    }
    const kindByte = inner[0] as number;
    const kind = kindByte & ~REKEY_AFTER_FLAG;
    const body = inner.subarray(1);
    if (kind !== FrameKind.data && kind !== FrameKind.close && kind !== FrameKind.rekey) {
      throw authError(role, 'malformed', { detail: `unknown frame kind ${kind}` });
    }
    if (kind === FrameKind.close && body.length < 1) throw authError(role, 'malformed', { detail: 'empty CLOSE frame' });
    if ((kindByte & REKEY_AFTER_FLAG) !== 0) this.#advance(receive, this.#now());
    else receive.counter += 1;
    if (kind === FrameKind.data) return { kind: 'data', data: body };
    if (kind === FrameKind.rekey) return { kind: 'rekey' };
    const reason = body[0] as number;
    const detail = new TextDecoder().decode(body.subarray(1));
    this.#setState('closed');
    if (reason === WIRE_REASON_NORMAL) return { kind: 'close', detail };
    const error = remoteAuthError(role, reason, detail);
    // The peer's failure is logged here, once, as this side's view of it.
    this.#logger?.failure(error, this.#logMeta, error.entry.retryable ? 'warn' : 'error');
    const failure = failureOfWireReason(reason);
    return { kind: 'close', detail, error, ...(failure ? { failure } : {}) };
  }

  #advance(direction: Direction, now: number): void {
    const next = nextEpochKey(direction.key);
    wipe(direction.key);
    direction.key = next;
    direction.counter = 0;
    direction.epoch += 1;
    direction.epochStartMs = now;
  }

  #assertOpen(): void {
    if (this.#state !== 'open') {
      throw authError(this.role, 'closed', {
        detail: `channel is ${this.#state}`,
        data: { state: this.#state, ...(this.#failure ? { failedWith: this.#failure.code } : {}) },
      });
    }
  }

  #fail(error: ConclaveError): void {
    this.#failure = error;
    this.#setState('failed');
    this.#logger?.failure(error, this.#logMeta, error.entry.retryable ? 'warn' : 'error');
  }

  #setState(next: ChannelState): void {
    const previous = this.#state;
    if (previous === next) return;
    // Only open may change: closed and failed are final.
    if (previous !== 'open') throw new Error(`sealed channel cannot go from ${previous} to ${next}`);
    this.#state = next;
    this.#logger?.debug('AUTH', 'session state changed', { ...this.#logMeta, from: previous, to: next });
  }
}

export function createSealedChannel(keys: SessionKeys, options: SealedChannelOptions = {}): SealedChannel {
  return new SealedChannel(keys, options);
}
