import type { ConclaveError, LogMeta, Logger } from '@conclave/common/core';
import nacl from 'tweetnacl';
import { authError, failureOf, remoteAuthError, wireReasonOf, type AuthFailure, type Role } from './auth-failure.js';
import { bytesEqual, concatBytes, toHex, utf8, wipe } from './bytes.js';
import { defaultCryptoProvider, type CryptoProvider } from './crypto-provider.js';
import type { EnrollmentHooks } from './enrollment.js';
import type { HandshakeRateLimiter } from './handshake-rate-limiter.js';
import {
  BOX_OVERHEAD_BYTES,
  decodeHeader,
  decodeKeyShare,
  decodeReject,
  encodeHeader,
  encodeKeyShare,
  encodeReject,
  HELLO_BYTES,
  isReject,
  KEY_BYTES,
  MAX_ROTATIONS,
  MessageType,
  RESPONSE_CLEAR_BYTES,
  SIGNATURE_BYTES,
} from './handshake-messages.js';
import { defaultRandom, fingerprint, nodeIdFromPublicKey, type Identity, type RandomSource } from './identity.js';
import { hashToken, JOIN_TOKEN_BYTES } from './join-string.js';
import { deriveHandshakeKeys, deriveSessionKeys, Transcript, type HandshakeKeys } from './key-schedule.js';
import {
  decodeRotationStatement,
  encodeRotationStatement,
  resolvePin,
  ROTATION_STATEMENT_BYTES,
  type PinSet,
  type RotationStatement,
} from './pins.js';
import { safeX25519, verifySignature } from './safe-primitives.js';
import { SealedChannel, type SessionKeys } from './sealed-channel.js';

/**
 * @default 5 s for the whole handshake, counted from the moment the session stream opens (the
 * orchestrator accepting it, the node opening it and sending HELLO), so waiting for HELLO counts.
 */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
/** @default ±5 minutes between the two clocks. */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** Domain strings keep a signature made for one purpose from verifying for another (or reflected). */
export const ORCHESTRATOR_SIGNATURE_DOMAIN = 'conclave/v1 orchestrator signature';
export const NODE_SIGNATURE_DOMAIN = 'conclave/v1 node signature';

/** Handshake payloads are sealed under single-use keys, so a fixed zero nonce is safe. */
const ZERO_NONCE = new Uint8Array(24);

/**
 * What the caller does after each step: send `send` as a handshake message and `sealed` as a
 * sealed frame if present; stop on `error` (already logged); use `done`.
 */
export interface HandshakeStep {
  /** A handshake message (HELLO, RESPONSE, FINISH or REJECT) for the peer. */
  send?: Uint8Array;
  /** A sealed CLOSE frame naming a refusal made after the node proved its key. */
  sealed?: Uint8Array;
  done?: EstablishedSession;
  error?: ConclaveError;
}

export interface EstablishedSession extends SessionKeys {
  /** Node side: fingerprints newly trusted through rotation statements; persist them. */
  addedPins: string[];
  /** Orchestrator side: true when this handshake enrolled the node with its join token. */
  enrolled: boolean;
}

export type InitiatorState = 'idle' | 'awaiting-response' | 'done' | 'failed';
export type ResponderState = 'awaiting-hello' | 'awaiting-finish' | 'done' | 'failed';

interface CommonOptions {
  identity: Identity;
  /** @default Date.now */
  now?: () => number;
  /** @default node:crypto randomBytes */
  random?: RandomSource;
  /** @default defaultCryptoProvider (node:crypto fast path) */
  provider?: CryptoProvider;
  /** @default DEFAULT_HANDSHAKE_TIMEOUT_MS */
  timeoutMs?: number;
  /** @default DEFAULT_MAX_CLOCK_SKEW_MS */
  maxClockSkewMs?: number;
  /** Gets state changes at debug and the one failure that ends the handshake. */
  logger?: Logger;
  logMeta?: LogMeta;
}

export interface InitiatorOptions extends CommonOptions {
  /** Orchestrator fingerprints this node trusts; rotations it accepts are added to it. */
  pins: PinSet;
  /** The join token, until the node has enrolled; afterwards the node connects by key alone. */
  token?: Uint8Array;
}

export interface ResponderOptions extends CommonOptions {
  hooks: EnrollmentHooks;
  /** Rotation statements that lead from older orchestrator keys to this one. */
  rotations?: readonly RotationStatement[];
  /** Checked once, on the HELLO, before any public-key work. */
  rateLimiter?: HandshakeRateLimiter;
  /** The peer address the rate limiter keys on. */
  source?: string;
}

type StepFailure = {
  failure: AuthFailure;
  error: ConclaveError;
  notify: boolean;
  /** False only for repeated refusals of a flooding source: one line per burst, not per attempt. */
  log?: boolean;
};

/** Shared lifecycle: a deadline, one logged failure, guarded terminal states. */
abstract class HandshakeBase<S extends string> {
  protected abstract readonly role: Role;
  protected readonly now: () => number;
  protected readonly random: RandomSource;
  protected readonly provider: CryptoProvider;
  protected readonly identity: Identity;
  protected readonly maxClockSkewMs: number;
  protected readonly transcript = new Transcript();
  protected keys: HandshakeKeys | undefined;
  #state: S;
  #failure: ConclaveError | undefined;
  /** On this handshake's clock (`now`); a caller's timer waits `timeoutMs` of wall time instead. */
  readonly deadlineMs: number;
  readonly timeoutMs: number;
  readonly #logger: Logger | undefined;
  readonly #logMeta: LogMeta;

  constructor(options: CommonOptions, initial: S) {
    this.now = options.now ?? Date.now;
    this.random = options.random ?? defaultRandom;
    this.provider = options.provider ?? defaultCryptoProvider;
    this.identity = options.identity;
    this.maxClockSkewMs = options.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.deadlineMs = this.now() + this.timeoutMs;
    this.#state = initial;
    this.#logger = options.logger;
    this.#logMeta = { ...options.logMeta };
  }

  get state(): S {
    return this.#state;
  }

  /** The error that ended the handshake, if it failed. */
  get failure(): ConclaveError | undefined {
    return this.#failure;
  }

  /**
   * Ends the handshake with a timeout (the caller's 5 s timer fired); returns the error, or
   * undefined when the handshake had already finished. Logged once, like every failure.
   */
  expire(): ConclaveError | undefined {
    if (this.isTerminal()) return undefined;
    return this.fail({ failure: 'timeout', error: authError(this.role, 'timeout'), notify: false }).error;
  }

  protected abstract isTerminal(): boolean;
  protected abstract failedState(): S;

  protected setState(next: S): void {
    const previous = this.#state;
    // Terminal states are final, except that a node which sent FINISH may still be refused.
    const refusedAfterDone = previous === 'done' && next === this.failedState() && this.role === 'node';
    if (this.isTerminal() && !refusedAfterDone) throw new Error(`handshake cannot go from ${previous} to ${next}`);
    this.#state = next;
    this.#logger?.debug('AUTH', 'handshake state changed', { ...this.#logMeta, from: previous, to: next });
  }

  protected fail(step: StepFailure): HandshakeStep {
    this.#failure = step.error;
    this.setState(this.failedState());
    if (step.log !== false) {
      this.#logger?.failure(step.error, this.#logMeta, step.error.entry.retryable ? 'warn' : 'error');
    }
    this.wipeSecrets();
    const result: HandshakeStep = { error: step.error };
    if (step.notify) result.send = encodeReject(wireReasonOf(step.failure), this.now());
    return result;
  }

  /** Runs one step; any coded error thrown inside becomes a failed, logged, terminal step. */
  protected async guard(run: () => Promise<HandshakeStep> | HandshakeStep, notify: boolean): Promise<HandshakeStep> {
    if (this.isTerminal()) {
      return { error: this.#failure ?? authError(this.role, 'malformed', { detail: 'handshake already finished' }) };
    }
    if (this.now() > this.deadlineMs) {
      return this.fail({ failure: 'timeout', error: authError(this.role, 'timeout'), notify: false });
    }
    try {
      return await run();
    } catch (err) {
      const failure = failureOf(err);
      // Hook errors (the registry's Redis is down) are not authentication failures: they end the
      // handshake but propagate unchanged for the caller's own handling.
      if (failure === undefined) {
        this.#failure = undefined;
        if (!this.isTerminal()) this.setState(this.failedState());
        this.wipeSecrets();
        throw err;
      }
      // A failure the peer reported is not echoed back to it.
      const error = err as ConclaveError;
      const remote = error.data['remoteReason'] !== undefined;
      const repeatedRefusal = failure === 'rate-limited' && Number(error.data['refusedInARow']) > 1;
      return this.fail({ failure, error, notify: notify && !remote && failure !== 'timeout', log: !repeatedRefusal });
    }
  }

  /** `peerTimeMs` is the full u64 from the wire: anything a JS number cannot hold is far outside the window. */
  protected checkSkew(peerTimeMs: bigint): void {
    const localTimeMs = this.now();
    const skew = peerTimeMs - BigInt(localTimeMs);
    const limit = BigInt(this.maxClockSkewMs);
    if (skew > limit || skew < -limit) {
      const skewMs = Number(skew);
      throw authError(this.role, 'clock-skew', {
        detail: `peer clock is ${Math.round(skewMs / 1000)} s ${skewMs > 0 ? 'ahead' : 'behind'}, limit ±${Math.round(this.maxClockSkewMs / 1000)} s`,
        // As strings when beyond a JS number, so a log shows the exact value that was sent.
        data: { peerTimeMs: exactNumber(peerTimeMs), localTimeMs, skewMs: exactNumber(skew), maxClockSkewMs: this.maxClockSkewMs },
      });
    }
  }

  protected sign(domain: string, transcriptHash: Uint8Array): Uint8Array {
    return this.provider.sign(concatBytes(utf8(domain), transcriptHash), this.identity.seed, this.identity.publicKey);
  }

  protected verify(domain: string, transcriptHash: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
    return verifySignature(this.provider, concatBytes(utf8(domain), transcriptHash), signature, publicKey);
  }

  protected wipeSecrets(): void {
    if (this.keys) {
      wipe(this.keys.responseKey);
      wipe(this.keys.finishKey);
      wipe(this.keys.chainKey);
    }
  }

  protected handleReject(bytes: Uint8Array): never {
    const reject = decodeReject(bytes, this.role);
    throw remoteAuthError(this.role, reject.reason, `peer clock ${describeTime(reject.timestampMs)}`);
  }
}

/**
 * The node's side of the handshake: `start()` gives message 1 (HELLO), `next(message 2)` gives
 * message 3 (FINISH) together with the session keys. The node then sends FINISH and opens a
 * SealedChannel; the orchestrator's first sealed frame says whether it was accepted (a CLOSE
 * frame names the refusal: pending, denied, revoked, token refused…).
 */
export class HandshakeInitiator extends HandshakeBase<InitiatorState> {
  protected readonly role = 'node' as const;
  readonly #pins: PinSet;
  readonly #token: Uint8Array | undefined;
  #ephemeralSecret: Uint8Array | undefined;

  constructor(options: InitiatorOptions) {
    super(options, 'idle');
    this.#pins = options.pins;
    if (options.token !== undefined && options.token.length !== JOIN_TOKEN_BYTES) {
      throw new RangeError('a join token is 32 bytes');
    }
    this.#token = options.token;
  }

  protected isTerminal(): boolean {
    return this.state === 'done' || this.state === 'failed';
  }

  protected failedState(): InitiatorState {
    return 'failed';
  }

  /** Message 1 (HELLO). */
  start(): Uint8Array {
    if (this.state !== 'idle') throw new Error('HandshakeInitiator.start() called twice');
    this.#ephemeralSecret = this.random(KEY_BYTES);
    const hello = encodeKeyShare(MessageType.hello, {
      timestampMs: BigInt(this.now()),
      ephemeralKey: this.provider.x25519PublicKey(this.#ephemeralSecret),
    });
    this.transcript.mix(hello);
    this.setState('awaiting-response');
    return hello;
  }

  /**
   * Consumes message 2 (or a REJECT) and returns message 3 with the session, or the error.
   * After `done`, it still accepts the one message that may follow FINISH on the handshake
   * channel: a REJECT saying the orchestrator refused FINISH itself (bad signature, key
   * confirmation, malformed); anything else there is a malformed message.
   */
  next(inbound: Uint8Array): Promise<HandshakeStep> {
    if (this.state === 'idle') throw new Error('HandshakeInitiator.next() before start()');
    if (this.state === 'done') return Promise.resolve(this.#afterDone(inbound));
    return this.guard(() => this.#onResponse(inbound), !isReject(inbound));
  }

  #afterDone(bytes: Uint8Array): HandshakeStep {
    let error: ConclaveError;
    try {
      if (decodeHeader(bytes, 'node') === MessageType.reject) this.handleReject(bytes);
      error = authError('node', 'malformed', { detail: 'handshake message after FINISH' });
    } catch (err) {
      if (failureOf(err) === undefined) throw err;
      error = err as ConclaveError;
    }
    return this.fail({ failure: failureOf(error) ?? 'malformed', error, notify: false });
  }

  #onResponse(bytes: Uint8Array): HandshakeStep {
    const type = decodeHeader(bytes, 'node');
    if (type === MessageType.reject) this.handleReject(bytes);
    if (type !== MessageType.response || bytes.length < RESPONSE_CLEAR_BYTES + BOX_OVERHEAD_BYTES) {
      throw authError('node', 'malformed', { detail: `expected RESPONSE, got type ${type} of ${bytes.length} bytes` });
    }
    const clear = bytes.subarray(0, RESPONSE_CLEAR_BYTES);
    const share = decodeKeyShare(bytes);
    this.checkSkew(share.timestampMs);
    const secret = this.#ephemeralSecret as Uint8Array;
    const shared = safeX25519(this.provider, secret, share.ephemeralKey);
    wipe(secret);
    if (!shared) throw authError('node', 'bad-key', { detail: 'all-zero X25519 result' });
    this.transcript.mix(clear);
    const signedHash = this.transcript.hash;
    const keys = deriveHandshakeKeys(shared, signedHash);
    wipe(shared);
    this.keys = keys;

    const sealed = bytes.subarray(RESPONSE_CLEAR_BYTES);
    const payload = nacl.secretbox.open(sealed, ZERO_NONCE, keys.responseKey);
    if (payload === null) throw authError('node', 'key-confirmation');
    const minPayload = KEY_BYTES + SIGNATURE_BYTES + 1;
    const rotationCount = payload[minPayload - 1] ?? 0;
    if (
      payload.length < minPayload ||
      rotationCount > MAX_ROTATIONS ||
      payload.length !== minPayload + rotationCount * ROTATION_STATEMENT_BYTES
    ) {
      throw authError('node', 'malformed', { detail: 'RESPONSE payload has the wrong length' });
    }
    const orchestratorKey = payload.slice(0, KEY_BYTES);
    const signature = payload.slice(KEY_BYTES, KEY_BYTES + SIGNATURE_BYTES);
    if (!this.verify(ORCHESTRATOR_SIGNATURE_DOMAIN, signedHash, signature, orchestratorKey)) {
      throw authError('node', 'bad-signature', { data: { orchestrator: fingerprint(orchestratorKey) } });
    }
    const rotations: RotationStatement[] = [];
    for (let i = 0; i < rotationCount; i++) {
      const offset = minPayload + i * ROTATION_STATEMENT_BYTES;
      rotations.push(decodeRotationStatement(payload.subarray(offset, offset + ROTATION_STATEMENT_BYTES), 'node'));
    }
    const resolution = resolvePin(this.#pins, orchestratorKey, rotations, this.provider);
    if (!resolution) {
      throw authError('node', 'pin-mismatch', {
        detail: `orchestrator key ${fingerprint(orchestratorKey)} is not pinned`,
        data: { orchestrator: fingerprint(orchestratorKey), pins: this.#pins.list() },
      });
    }
    this.transcript.mix(sealed);

    const header = encodeHeader(MessageType.finish);
    this.transcript.mix(header);
    const nodeSignature = this.sign(NODE_SIGNATURE_DOMAIN, this.transcript.hash);
    const token = this.#token ?? new Uint8Array(0);
    const finishPayload = concatBytes(this.identity.publicKey, nodeSignature, Uint8Array.of(token.length), token);
    const finishBox = nacl.secretbox(finishPayload, ZERO_NONCE, keys.finishKey);
    this.transcript.mix(finishBox);
    const finalHash = this.transcript.hash;
    const directional = deriveSessionKeys(keys.chainKey, finalHash);
    this.wipeSecrets();
    const done: EstablishedSession = {
      role: 'node',
      sendKey: directional.nodeToOrchestrator,
      receiveKey: directional.orchestratorToNode,
      sessionId: toHex(finalHash.subarray(0, 16)),
      transcriptHash: finalHash,
      peerPublicKey: orchestratorKey,
      peerId: fingerprint(orchestratorKey),
      addedPins: resolution.added,
      enrolled: false,
    };
    this.setState('done');
    return { send: concatBytes(header, finishBox), done };
  }
}

/**
 * The orchestrator's side: `next(HELLO)` gives message 2; `next(FINISH)` gives the session, or
 * a refusal. Refusals after the node proved its key (pending, denied, revoked, unknown, token,
 * key mismatch) are sent as a sealed CLOSE frame the node can trust; earlier ones as a REJECT.
 */
export class HandshakeResponder extends HandshakeBase<ResponderState> {
  protected readonly role = 'orchestrator' as const;
  readonly #hooks: EnrollmentHooks;
  readonly #rotations: readonly RotationStatement[];
  readonly #rateLimiter: HandshakeRateLimiter | undefined;
  readonly #source: string;

  constructor(options: ResponderOptions) {
    super(options, 'awaiting-hello');
    this.#hooks = options.hooks;
    this.#rotations = options.rotations ?? [];
    if (this.#rotations.length > MAX_ROTATIONS) throw new RangeError(`at most ${MAX_ROTATIONS} rotation statements`);
    this.#rateLimiter = options.rateLimiter;
    this.#source = options.source ?? 'unknown';
  }

  protected isTerminal(): boolean {
    return this.state === 'done' || this.state === 'failed';
  }

  protected failedState(): ResponderState {
    return 'failed';
  }

  next(inbound: Uint8Array): Promise<HandshakeStep> {
    return this.guard(
      () => (this.state === 'awaiting-hello' ? this.#onHello(inbound) : this.#onFinish(inbound)),
      // A peer's REJECT is never answered, at any step, even when it fails a check itself.
      !isReject(inbound),
    );
  }

  #onHello(bytes: Uint8Array): HandshakeStep {
    if (this.#rateLimiter) {
      const decision = this.#rateLimiter.tryAcquire(this.#source);
      if (!decision.allowed) {
        throw authError('orchestrator', 'rate-limited', {
          data: { source: this.#source, retryAfterMs: decision.retryAfterMs, refusedInARow: decision.refusedInARow },
        });
      }
    }
    const type = decodeHeader(bytes, 'orchestrator');
    if (type === MessageType.reject) this.handleReject(bytes);
    if (type !== MessageType.hello || bytes.length !== HELLO_BYTES) {
      throw authError('orchestrator', 'malformed', { detail: `expected HELLO, got type ${type} of ${bytes.length} bytes` });
    }
    const share = decodeKeyShare(bytes);
    this.checkSkew(share.timestampMs);
    const secret = this.random(KEY_BYTES);
    const shared = safeX25519(this.provider, secret, share.ephemeralKey);
    if (!shared) {
      wipe(secret);
      throw authError('orchestrator', 'bad-key', { detail: 'all-zero X25519 result', data: { source: this.#source } });
    }
    this.transcript.mix(bytes);
    const clear = encodeKeyShare(MessageType.response, {
      timestampMs: BigInt(this.now()),
      ephemeralKey: this.provider.x25519PublicKey(secret),
    });
    wipe(secret);
    this.transcript.mix(clear);
    const signedHash = this.transcript.hash;
    const keys = deriveHandshakeKeys(shared, signedHash);
    wipe(shared);
    this.keys = keys;
    const payload = concatBytes(
      this.identity.publicKey,
      this.sign(ORCHESTRATOR_SIGNATURE_DOMAIN, signedHash),
      Uint8Array.of(this.#rotations.length),
      ...this.#rotations.map(encodeRotationStatement),
    );
    const sealed = nacl.secretbox(payload, ZERO_NONCE, keys.responseKey);
    this.transcript.mix(sealed);
    this.setState('awaiting-finish');
    return { send: concatBytes(clear, sealed) };
  }

  async #onFinish(bytes: Uint8Array): Promise<HandshakeStep> {
    const type = decodeHeader(bytes, 'orchestrator');
    if (type === MessageType.reject) this.handleReject(bytes);
    const header = bytes.subarray(0, 8);
    if (type !== MessageType.finish) {
      throw authError('orchestrator', 'malformed', { detail: `expected FINISH, got type ${type}` });
    }
    const keys = this.keys as HandshakeKeys;
    this.transcript.mix(header);
    const signedHash = this.transcript.hash;
    const sealed = bytes.subarray(8);
    const payload = nacl.secretbox.open(sealed, ZERO_NONCE, keys.finishKey);
    if (payload === null) throw authError('orchestrator', 'key-confirmation', { data: { source: this.#source } });
    const tokenLength = payload[KEY_BYTES + SIGNATURE_BYTES] ?? -1;
    if (
      (tokenLength !== 0 && tokenLength !== JOIN_TOKEN_BYTES) ||
      payload.length !== KEY_BYTES + SIGNATURE_BYTES + 1 + tokenLength
    ) {
      throw authError('orchestrator', 'malformed', { detail: 'FINISH payload has the wrong length' });
    }
    const nodeKey = payload.slice(0, KEY_BYTES);
    const signature = payload.slice(KEY_BYTES, KEY_BYTES + SIGNATURE_BYTES);
    const token = tokenLength > 0 ? payload.slice(KEY_BYTES + SIGNATURE_BYTES + 1) : undefined;
    const nodeId = nodeIdFromPublicKey(nodeKey);
    if (!this.verify(NODE_SIGNATURE_DOMAIN, signedHash, signature, nodeKey)) {
      throw authError('orchestrator', 'bad-signature', { data: { nodeId, source: this.#source } });
    }
    this.transcript.mix(sealed);
    const finalHash = this.transcript.hash;
    const directional = deriveSessionKeys(keys.chainKey, finalHash);
    this.wipeSecrets();
    const session: EstablishedSession = {
      role: 'orchestrator',
      sendKey: directional.orchestratorToNode,
      receiveKey: directional.nodeToOrchestrator,
      sessionId: toHex(finalHash.subarray(0, 16)),
      transcriptHash: finalHash,
      peerPublicKey: nodeKey,
      peerId: nodeId,
      addedPins: [],
      enrolled: false,
    };

    // From here the node has proved its key: refusals go back sealed, so it can trust them.
    const refuse = (failure: AuthFailure, data: Record<string, unknown>, detail?: string): HandshakeStep => {
      const error = authError('orchestrator', failure, {
        ...(detail !== undefined ? { detail } : {}),
        data: { nodeId, sessionId: session.sessionId, source: this.#source, ...data },
      });
      const closeFrame = new SealedChannel(session, { now: this.now }).close(failure, detail ?? '');
      const step = this.fail({ failure, error, notify: false });
      if (closeFrame) step.sealed = closeFrame;
      return step;
    };

    const record = await this.#hooks.lookupNode(nodeId, nodeKey);
    if (record.publicKey && !bytesEqual(record.publicKey, nodeKey)) {
      return refuse('key-mismatch', { status: record.status });
    }
    switch (record.status) {
      case 'accepted':
        break;
      case 'pending':
      case 'denied':
      case 'revoked':
        return refuse(record.status, { status: record.status });
      case 'unknown': {
        if (!token) return refuse('unknown-node', {});
        const outcome = await this.#hooks.enroll({ nodeId, publicKey: nodeKey, tokenHash: hashToken(token), nowMs: this.now() });
        if (!outcome.ok) return refuse('token-refused', { reason: outcome.reason }, `token ${outcome.reason}`);
        session.enrolled = true;
        if (outcome.status === 'pending') return refuse('pending', { status: 'pending', enrolled: true });
        break;
      }
    }
    this.setState('done');
    return { done: session };
  }
}

/** A u64 as a number when it is one exactly, else as its decimal string. */
function exactNumber(value: bigint): number | string {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
}

/** ISO time for a peer's clock, or the raw number when it is no date at all (a REJECT is never trusted). */
function describeTime(ms: bigint): string {
  // ±8.64e15 ms is the range of a JS Date.
  return ms <= 8_640_000_000_000_000n ? new Date(Number(ms)).toISOString() : `${ms} ms`;
}

export function createInitiator(options: InitiatorOptions): HandshakeInitiator {
  return new HandshakeInitiator(options);
}

export function createResponder(options: ResponderOptions): HandshakeResponder {
  return new HandshakeResponder(options);
}
