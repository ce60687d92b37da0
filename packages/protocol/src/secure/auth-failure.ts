import { ConclaveError, type ErrorCode } from '@conclave/common/core';

/**
 * Which end of a session a piece of code plays. The node dials, so it is always the handshake
 * initiator and logs `NODE-AUTH-…`; the orchestrator is the responder and logs `ORCH-AUTH-…`.
 */
export type Role = 'node' | 'orchestrator';

/** Everything that can fail in identities, enrollment, the handshake and the sealed channel. */
export type AuthFailure =
  | 'pin-mismatch'
  | 'token-refused'
  | 'malformed'
  | 'unsupported'
  | 'bad-key'
  | 'bad-signature'
  | 'key-confirmation'
  | 'clock-skew'
  | 'timeout'
  | 'rate-limited'
  | 'pending'
  | 'denied'
  | 'revoked'
  | 'unknown-node'
  | 'key-mismatch'
  | 'key-file-mode'
  | 'key-file'
  | 'frame-auth'
  | 'frame-sequence'
  | 'key-lifetime'
  | 'closed'
  | 'frame-size'
  | 'peer-error'
  | 'protocol'
  | 'join-string'
  | 'rotation'
  | 'pins-file';

interface FailureRow {
  /** Code logged by the node when it detects this failure itself. */
  readonly node?: ErrorCode;
  /** Code logged by the orchestrator when it detects this failure itself. */
  readonly orchestrator?: ErrorCode;
  /** Reason byte in REJECT and CLOSE messages; absent when the failure is never sent. */
  readonly wire?: number;
  /**
   * Code the receiving side logs when the peer reports this failure; absent means the generic
   * "peer closed the session with an error" code (…-535).
   */
  readonly remote?: { readonly node?: ErrorCode; readonly orchestrator?: ErrorCode };
}

/** The one table from failure to codes and wire reasons; docs/protocol.md lists the same. */
export const AUTH_FAILURES: Readonly<Record<AuthFailure, FailureRow>> = {
  'pin-mismatch': { node: 'NODE-AUTH-501', wire: 16 },
  'token-refused': { orchestrator: 'ORCH-AUTH-501', wire: 14, remote: { node: 'NODE-AUTH-515' } },
  malformed: { node: 'NODE-AUTH-502', orchestrator: 'ORCH-AUTH-502', wire: 1 },
  unsupported: {
    node: 'NODE-AUTH-503',
    orchestrator: 'ORCH-AUTH-503',
    wire: 2,
    remote: { node: 'NODE-AUTH-503', orchestrator: 'ORCH-AUTH-503' },
  },
  'bad-key': { node: 'NODE-AUTH-504', orchestrator: 'ORCH-AUTH-504', wire: 3 },
  'bad-signature': { node: 'NODE-AUTH-505', orchestrator: 'ORCH-AUTH-505', wire: 4 },
  'key-confirmation': { node: 'NODE-AUTH-506', orchestrator: 'ORCH-AUTH-506', wire: 5 },
  'clock-skew': {
    node: 'NODE-AUTH-507',
    orchestrator: 'ORCH-AUTH-507',
    wire: 6,
    remote: { node: 'NODE-AUTH-507', orchestrator: 'ORCH-AUTH-507' },
  },
  timeout: { node: 'NODE-AUTH-508', orchestrator: 'ORCH-AUTH-508', wire: 7 },
  'rate-limited': { orchestrator: 'ORCH-AUTH-509', wire: 8, remote: { node: 'NODE-AUTH-509' } },
  pending: { orchestrator: 'ORCH-AUTH-510', wire: 9, remote: { node: 'NODE-AUTH-510' } },
  denied: { orchestrator: 'ORCH-AUTH-511', wire: 10, remote: { node: 'NODE-AUTH-511' } },
  revoked: { orchestrator: 'ORCH-AUTH-512', wire: 11, remote: { node: 'NODE-AUTH-512' } },
  'unknown-node': { orchestrator: 'ORCH-AUTH-513', wire: 12, remote: { node: 'NODE-AUTH-513' } },
  'key-mismatch': { orchestrator: 'ORCH-AUTH-514', wire: 13, remote: { node: 'NODE-AUTH-514' } },
  'key-file-mode': { node: 'NODE-AUTH-520', orchestrator: 'ORCH-AUTH-520' },
  'key-file': { node: 'NODE-AUTH-521', orchestrator: 'ORCH-AUTH-521' },
  'frame-auth': { node: 'NODE-AUTH-530', orchestrator: 'ORCH-AUTH-530', wire: 17 },
  'frame-sequence': { node: 'NODE-AUTH-531', orchestrator: 'ORCH-AUTH-531', wire: 18 },
  'key-lifetime': { node: 'NODE-AUTH-532', orchestrator: 'ORCH-AUTH-532', wire: 19 },
  closed: { node: 'NODE-AUTH-533', orchestrator: 'ORCH-AUTH-533' },
  'frame-size': { node: 'NODE-AUTH-534', orchestrator: 'ORCH-AUTH-534', wire: 20 },
  'peer-error': { node: 'NODE-AUTH-535', orchestrator: 'ORCH-AUTH-535', wire: 15 },
  // Not authentication: the peer broke the session protocol after the handshake (a message out of
  // place, a second Register, one that does not decode). Its codes are the sessions' NET codes.
  protocol: { node: 'NODE-NET-605', orchestrator: 'ORCH-NET-603', wire: 21 },
  'join-string': { node: 'NODE-AUTH-540' },
  rotation: { node: 'NODE-AUTH-541', orchestrator: 'ORCH-AUTH-541' },
  'pins-file': { node: 'NODE-AUTH-542' },
};

/** Reason byte 0 in a CLOSE frame: an orderly close, not an error. */
export const WIRE_REASON_NORMAL = 0;

const BY_WIRE = new Map<number, AuthFailure>(
  (Object.entries(AUTH_FAILURES) as Array<[AuthFailure, FailureRow]>)
    .filter(([, row]) => row.wire !== undefined)
    .map(([failure, row]) => [row.wire as number, failure]),
);

/** Every code a side logs for a failure it detected itself, back to that failure. */
const BY_CODE = new Map<ErrorCode, AuthFailure>(
  (Object.entries(AUTH_FAILURES) as Array<[AuthFailure, FailureRow]>).flatMap(([failure, row]) =>
    [row.node, row.orchestrator].filter((code): code is ErrorCode => code !== undefined).map((code) => [code, failure] as const),
  ),
);

/**
 * The failure a CLOSE for `err` names, or undefined for an orderly close (reason 0). The one
 * mapping from coded errors to CLOSE reasons: errors made here carry their failure; any other
 * error whose code is in AUTH_FAILURES (`ORCH-NET-603` → `protocol`) names that row; everything
 * else (shutdown, a replaced session, a dead node) closes orderly.
 */
export function closeFailureOf(err: ConclaveError): AuthFailure | undefined {
  return failureOf(err) ?? BY_CODE.get(err.code);
}

/** The failure a reason byte names, or undefined for 0 and unknown bytes. */
export function failureOfWireReason(reason: number): AuthFailure | undefined {
  return BY_WIRE.get(reason);
}

/** The reason byte sent to the peer for a failure (peer-error when the failure has none). */
export function wireReasonOf(failure: AuthFailure): number {
  return AUTH_FAILURES[failure].wire ?? (AUTH_FAILURES['peer-error'].wire as number);
}

export interface AuthErrorOptions {
  detail?: string;
  data?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The coded error for a failure detected locally by `role`. The failure name travels in
 * `data.failure` so that callers (and the state machines) can switch on it without parsing codes.
 */
export function authError(role: Role, failure: AuthFailure, options: AuthErrorOptions = {}): ConclaveError {
  const row = AUTH_FAILURES[failure];
  const code = row[role] ?? AUTH_FAILURES['peer-error'][role];
  if (code === undefined) throw new Error(`auth failure ${failure} has no code for ${role}`);
  return new ConclaveError(code, {
    ...(options.detail !== undefined ? { detail: options.detail } : {}),
    data: { ...options.data, failure },
    ...(options.cause !== undefined ? { cause: options.cause } : {}),
  });
}

/** The coded error for a failure the peer reported in a REJECT or CLOSE message. */
export function remoteAuthError(role: Role, reason: number, detail?: string): ConclaveError {
  const failure = failureOfWireReason(reason);
  const specific = failure === undefined ? undefined : AUTH_FAILURES[failure].remote?.[role];
  const code = specific ?? (AUTH_FAILURES['peer-error'][role] as ErrorCode);
  return new ConclaveError(code, {
    detail: `peer reported ${failure ?? `reason ${reason}`}${detail ? `: ${detail}` : ''}`,
    data: { failure: specific ? failure : 'peer-error', remoteFailure: failure ?? 'unknown', remoteReason: reason },
  });
}

/** The failure name stored in an error made by this module, if any. */
export function failureOf(err: unknown): AuthFailure | undefined {
  if (!(err instanceof ConclaveError)) return undefined;
  const failure = err.data['failure'];
  return typeof failure === 'string' && failure in AUTH_FAILURES ? (failure as AuthFailure) : undefined;
}
