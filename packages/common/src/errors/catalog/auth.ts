import { defineErrors } from './define-errors.js';

/**
 * Handshake, enrollment, identity and sealed-channel errors (owner: the secure-session engineer).
 * The side that detects a failure logs it under its own prefix: the node agent (initiator) as
 * `NODE-AUTH-5xx`, the orchestrator (responder) as `ORCH-AUTH-5xx`. Where both sides can detect
 * the same failure the number is the same. None of these is retried in a loop (DESIGN.md: "no retry
 * loop; a clear AUTH error; operator action") except where `retryable` says otherwise.
 * Spec: docs/protocol.md.
 */
export const AUTH_ERRORS = defineErrors({
  'ORCH-AUTH-501': {
    message: 'join token invalid, used or expired',
    recovery: 'Create a new token with `orchestrator token create` and join again; no retry loop.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'NODE-AUTH-501': {
    message: 'orchestrator key does not match the pinned fingerprint',
    recovery: 'Check the join string; the agent refuses to talk to an orchestrator it has not pinned. No retry loop.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'ORCH-AUTH-502': {
    message: 'malformed handshake message or frame from a node',
    recovery: 'The session is closed; other sessions are unaffected. Check that the node runs a compatible agent.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'NODE-AUTH-502': {
    message: 'malformed handshake message or frame from the orchestrator',
    recovery: 'The session is closed; check that the address in the join string is a Conclave orchestrator of a compatible version.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-AUTH-503': {
    message: 'unsupported session protocol version or suite offered by a node',
    recovery: 'Upgrade the node agent; the orchestrator never falls back to an older version or suite.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-AUTH-503': {
    message: 'unsupported session protocol version or suite',
    recovery: 'Upgrade the node agent or the orchestrator so both speak the same version; there is no fallback.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-504': {
    message: 'invalid ephemeral key from a node (all-zero or low-order Diffie-Hellman result)',
    recovery: 'The session is closed; a correct agent never sends such a key, so treat the source as hostile.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'NODE-AUTH-504': {
    message: 'invalid ephemeral key from the orchestrator (all-zero or low-order Diffie-Hellman result)',
    recovery: 'The session is closed; something between the node and the orchestrator is tampering with the handshake.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'ORCH-AUTH-505': {
    message: 'node signature over the handshake transcript is invalid',
    recovery: 'The session is closed; a replayed or forged handshake message, or a node whose key changed. No retry loop.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'NODE-AUTH-505': {
    message: 'orchestrator signature over the handshake transcript is invalid',
    recovery: 'The session is closed; something is impersonating the orchestrator or tampering with the handshake.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'ORCH-AUTH-506': {
    message: 'handshake key confirmation failed',
    recovery: 'The node did not prove it derived the same keys (tampered or replayed message); the session is closed.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'NODE-AUTH-506': {
    message: 'handshake key confirmation failed',
    recovery: 'The orchestrator did not prove it derived the same keys (a modified handshake message); the session is closed.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'ORCH-AUTH-507': {
    message: 'node clock is too far from the orchestrator clock',
    recovery: 'Fix time synchronisation (NTP, chrony) on the node; the allowed skew is 5 minutes by default.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-AUTH-507': {
    message: 'node clock is too far from the orchestrator clock',
    recovery: 'Fix time synchronisation (NTP, chrony) on the board, then restart the agent; the allowed skew is 5 minutes by default.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-508': {
    message: 'handshake did not complete in time',
    recovery: 'The half-open session is dropped; the node reconnects with backoff.',
    status: 'DEADLINE_EXCEEDED',
    retryable: true,
  },
  'NODE-AUTH-508': {
    message: 'handshake did not complete in time',
    recovery: 'The agent reconnects with exponential backoff and full jitter; check the network to the orchestrator.',
    status: 'DEADLINE_EXCEEDED',
    retryable: true,
  },
  'ORCH-AUTH-509': {
    message: 'too many handshake attempts from one source',
    recovery: 'Further attempts from that source are refused cheaply until its bucket refills; other sources are unaffected.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'NODE-AUTH-509': {
    message: 'orchestrator refused the handshake: too many attempts from this address',
    recovery: 'The agent backs off and retries; if it persists, look for another process flooding from the same address.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'ORCH-AUTH-510': {
    message: 'node is pending approval',
    recovery: 'Approve it with `orchestrator nodes approve <node-id>` (or run with `--approval auto`); the node retries with backoff.',
    status: 'PERMISSION_DENIED',
    retryable: true,
  },
  'NODE-AUTH-510': {
    message: 'this node is pending approval on the orchestrator',
    recovery: 'An operator must run `orchestrator nodes approve <node-id>`; the agent retries with backoff meanwhile.',
    status: 'PERMISSION_DENIED',
    retryable: true,
  },
  'ORCH-AUTH-511': {
    message: 'node is denied',
    recovery: 'The node stays refused; an operator may approve it explicitly if the denial was a mistake.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  'NODE-AUTH-511': {
    message: 'this node was denied by the orchestrator',
    recovery: 'Ask an operator; the agent does not retry. A new identity needs a new join token.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  'ORCH-AUTH-512': {
    message: 'node is revoked',
    recovery: 'The node stays refused; re-enroll the board with a new identity and join token if it is trusted again.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  'NODE-AUTH-512': {
    message: 'this node was revoked by the orchestrator',
    recovery: 'The agent does not retry; wipe the identity in the data dir and join with a new token if the board is trusted again.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  'ORCH-AUTH-513': {
    message: 'unknown node without a join token',
    recovery: 'Give the board a join string (`orchestrator token create`) and start it with `--join`.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'NODE-AUTH-513': {
    message: 'the orchestrator does not know this node',
    recovery: 'Start the agent with `--join <join string>` from `orchestrator token create`.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'ORCH-AUTH-514': {
    message: 'node id claimed with another key',
    recovery: 'The session is refused: a node id is bound to the key it enrolled with. Treat the source as hostile.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  'NODE-AUTH-514': {
    message: 'orchestrator refused the node key for this node id',
    recovery: 'The identity in the data dir does not match the one enrolled; restore it, or enroll again with a new token.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  'NODE-AUTH-515': {
    message: 'orchestrator refused the join token (invalid, used or expired)',
    recovery: 'Create a new token with `orchestrator token create` and start the agent with the new join string.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'ORCH-AUTH-520': {
    message: 'orchestrator key file is readable by other users',
    recovery: 'Run `chmod 600` on the key file (and check who could have read it); the orchestrator refuses to start until then.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-AUTH-520': {
    message: 'node key file is readable by other users',
    recovery: 'Run `chmod 600` on the key file in the data dir (and check who could have read it); the agent refuses to start until then.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-521': {
    message: 'orchestrator key file is unreadable or malformed',
    recovery: 'Restore the key file from backup; a new key needs a signed rotation statement so nodes keep trusting it.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-AUTH-521': {
    message: 'node key file is unreadable or malformed',
    recovery: 'Restore the key file, or remove it and enroll again with a new join token (the node id will change).',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-530': {
    message: 'sealed frame failed authentication',
    recovery: 'The session is closed (tampered, injected or reflected frame); the node reconnects with a new handshake.',
    status: 'UNAUTHENTICATED',
    retryable: true,
  },
  'NODE-AUTH-530': {
    message: 'sealed frame failed authentication',
    recovery: 'The session is closed (tampered, injected or reflected frame); the agent reconnects with a new handshake.',
    status: 'UNAUTHENTICATED',
    retryable: true,
  },
  'ORCH-AUTH-531': {
    message: 'sealed frame out of sequence (replayed, reordered or dropped)',
    recovery: 'The session is closed; the node reconnects with a new handshake and resends unacknowledged work.',
    status: 'UNAUTHENTICATED',
    retryable: true,
  },
  'NODE-AUTH-531': {
    message: 'sealed frame out of sequence (replayed, reordered or dropped)',
    recovery: 'The session is closed; the agent reconnects with a new handshake and resends its outbox.',
    status: 'UNAUTHENTICATED',
    retryable: true,
  },
  'ORCH-AUTH-532': {
    message: 'node kept using a key past its frame limit without rekeying',
    recovery: 'The session is closed; a correct agent rekeys before the limit. Upgrade the agent.',
    status: 'UNAUTHENTICATED',
    retryable: true,
  },
  'NODE-AUTH-532': {
    message: 'orchestrator kept using a key past its frame limit without rekeying',
    recovery: 'The session is closed and reopened with a new handshake; upgrade the orchestrator.',
    status: 'UNAUTHENTICATED',
    retryable: true,
  },
  'ORCH-AUTH-533': {
    message: 'session is closed',
    recovery: 'A frame was sealed or opened after the session closed or failed; open a new session.',
    status: 'FAILED_PRECONDITION',
    retryable: true,
  },
  'NODE-AUTH-533': {
    message: 'session is closed',
    recovery: 'A frame was sealed or opened after the session closed or failed; the agent opens a new session.',
    status: 'FAILED_PRECONDITION',
    retryable: true,
  },
  'ORCH-AUTH-534': {
    message: 'sealed frame too large or truncated',
    recovery: 'The session is closed; frames are limited in size (see docs/protocol.md).',
    status: 'INVALID_ARGUMENT',
    retryable: true,
  },
  'NODE-AUTH-534': {
    message: 'sealed frame too large or truncated',
    recovery: 'The session is closed; frames are limited in size (see docs/protocol.md).',
    status: 'INVALID_ARGUMENT',
    retryable: true,
  },
  'ORCH-AUTH-535': {
    message: 'node closed the session with an error',
    recovery: 'Read the node-side log line with the same session id; the node reconnects if the error is retryable.',
    status: 'ABORTED',
    retryable: true,
  },
  'NODE-AUTH-535': {
    message: 'orchestrator closed the session with an error',
    recovery: 'Read the orchestrator log line with the same session id; the agent reconnects with backoff.',
    status: 'ABORTED',
    retryable: true,
  },
  'NODE-AUTH-540': {
    message: 'join string is malformed',
    recovery: 'Copy the whole join string printed by `orchestrator token create` (it starts with `conclave-join:v1:`).',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-AUTH-541': {
    message: 'key rotation statement is invalid',
    recovery: 'Re-create the statement with `orchestrator key rotate` using the old key; nodes only accept a new key signed by a pinned one.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-AUTH-541': {
    message: 'key rotation statement from the orchestrator is invalid',
    recovery: 'The new orchestrator key is not trusted; re-issue the statement with the old key, or re-join with a new join string.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'NODE-AUTH-542': {
    message: 'pinned fingerprint list is malformed',
    recovery: 'Fix or remove the pins file in the data dir and join again with a join string.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
});
