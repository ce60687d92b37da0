import { defineErrors } from './define-errors.js';

/** Group chat errors (docs/chat.md): the orchestrator's sequencer and the agents' chat clients. */
export const CHAT_ERRORS = defineErrors({
  'CHAT-REQ-201': {
    message: 'unknown room',
    recovery: 'Create it with `orchestrator chat create ROOM` (or list rooms with `orchestrator chat rooms`). Not retried.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'CHAT-REQ-202': {
    message: 'invalid room name',
    recovery: 'Use 1-64 characters from [a-z0-9._-], starting with a letter or digit.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'CHAT-REQ-203': {
    message: 'chat message too large',
    recovery: 'Shorten the text below the limit the message names (--chat-max-message-bytes on the orchestrator); nothing was appended.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'CHAT-REQ-204': {
    message: 'malformed chat request',
    recovery: 'Fix the request as the message says (the board socket speaks one JSON object a line: docs/chat.md). Nothing was appended.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'CHAT-REQ-205': {
    message: 'claim TTL out of range',
    recovery: 'Give a TTL between the bounds the message names (100 ms to 24 h).',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'CHAT-REQ-206': {
    message: 'room already exists',
    recovery: 'Nothing to do: the room is there; join or post to it.',
    status: 'ALREADY_EXISTS',
    retryable: false,
  },
  'CHAT-REQ-207': {
    message: 'invalid client message id or resource name',
    recovery: 'Use 1-128 printable characters without spaces.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'CHAT-REQ-208': {
    message: 'too many chat rooms or requests for one member',
    recovery: 'A node may follow at most the rooms and have at most the requests in flight that the message names; leave a room or wait for answers.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'CHAT-AUTH-501': {
    message: 'not a member of the room',
    recovery: 'Join the room first (`node-agent chat join ROOM`, or the socket op "join"); nodes are members of `fleet` from their first session.',
    status: 'PERMISSION_DENIED',
    retryable: false,
  },
  'CHAT-STATE-701': {
    message: 'stale fencing token',
    recovery: 'The claim this token came from has expired or was released, and maybe taken by another member: claim the resource again before acting on it.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'CHAT-STATE-702': {
    message: 'resource held by another member',
    recovery: 'First come, first served: the answer names the holder and the seq of its claim. Wait for its release or expiry (follow the room), then claim again.',
    status: 'ABORTED',
    retryable: false,
  },
  'CHAT-STATE-703': {
    message: 'chat resynchronisation: the resume point is not in the log',
    recovery: 'The member gets the room\'s context snapshot and continues from its head: its cursor was older than the log keeps (trimmed), ahead of it (Redis lost its tail), or of an earlier epoch.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'CHAT-STATE-704': {
    message: 'resource is not claimed',
    recovery: 'Nothing to release: the claim expired or was released already.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'CHAT-STATE-705': {
    message: 'chat outbox write failed',
    recovery: 'The post is kept in memory and sent when the orchestrator is reachable, but would be lost on a restart: check the data dir\'s disk (space, permissions).',
    status: 'INTERNAL',
    retryable: true,
  },
  'CHAT-STATE-706': {
    message: 'chat outbox full',
    recovery: 'The node is offline and holds the most posts it keeps; nothing more is queued until the orchestrator is reachable again.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'CHAT-STATE-707': {
    message: 'chat cursors could not be written',
    recovery: 'The node keeps following from memory; after a restart it would resume from an older seq and get the messages since then again. Check the data dir\'s disk (space, permissions).',
    status: 'INTERNAL',
    retryable: true,
  },
  'CHAT-NET-601': {
    message: 'orchestrator unreachable for a chat request',
    recovery: 'Claims, releases, joins and context need the orchestrator; retry when the node is connected (posts are queued and sent on reconnect).',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'CHAT-NET-602': {
    message: 'node agent chat socket unavailable',
    recovery: 'Start the node agent for this --data-dir (the socket is <data-dir>/chat.sock), and run the command as the user the agent runs as.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'CHAT-RESP-301': {
    message: 'assistant unavailable: no text model in the fleet',
    recovery: 'Start a model server that joins the fleet (`model-server --join …`); messages addressed to @assistant are answered once one is connected.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'CHAT-RESP-302': {
    message: 'assistant could not answer',
    recovery: 'The generate job failed; the log line names its code. The message stays in the room; address @assistant again to retry.',
    status: 'INTERNAL',
    retryable: true,
  },
});
