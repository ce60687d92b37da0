import { defineErrors } from './define-errors.js';

/** The fleet log store (docs/operations.md, "Fleet logs"): the orchestrator's side of shipped logs and `orchestrator logs`. */
export const LOG_ERRORS = defineErrors({
  'ORCH-REQ-260': {
    message: 'unknown node in a log filter',
    recovery: 'Give a node id or name that `orchestrator nodes list` shows (nodes that ever registered are known, also when offline).',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'ORCH-REQ-261': {
    message: 'malformed log query',
    recovery:
      'Fix the filter the message names: --prefix ORCH-|NODE-|CHAT-|MODEL-, --section one of the sections in docs/errors.md, ' +
      '--level error|warn|info|debug, --since a duration (`10m`, `2h`, `90s`) or an ISO time.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-REQ-262': {
    message: 'unknown job in a log filter',
    recovery: 'No job of that id exists and none of its records are stored (they expire with --log-max-age). Check the id with `orchestrator jobs list`.',
    status: 'NOT_FOUND',
    retryable: false,
  },
  'ORCH-REQ-263': {
    message: 'too many log followers',
    recovery: 'Every `logs -f` and dashboard tail holds a Redis connection; stop one you no longer watch, or retry later.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'ORCH-REQ-264': {
    message: "log records over the node's rate budget dropped",
    recovery:
      'A node shipped more records per second than the orchestrator takes from one node (--log-node-rate); the gap record counts them. ' +
      "Lower the node's --log-ship-level, or find what it logs in a loop in its own log files.",
    status: 'RESOURCE_EXHAUSTED',
    retryable: false,
  },
  'ORCH-REQ-265': {
    message: 'malformed shipped log record dropped',
    recovery: 'A node sent a record with an unknown level, prefix or section, or one that is not JSON; it was counted and dropped. Upgrade the node agent.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-NET-610': {
    message: 'log follow ended: the orchestrator is shutting down',
    recovery: '`orchestrator logs -f` follows again on its own, from after the last record it printed, once an orchestrator answers.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-STATE-720': {
    message: "orchestrator log records dropped: the store's buffer was full",
    recovery: 'Redis was unreachable or slow for long enough that the orchestrator kept more records than it may; the gap record counts them. The local log files still have them.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-STATE-721': {
    message: 'log records trimmed before they were read',
    recovery: 'The store keeps --log-max-records records and --log-max-age of them; a follower (or a `--since`) older than that misses the trimmed ones. Raise the limits if you need more history.',
    status: 'OUT_OF_RANGE',
    retryable: false,
  },
  'ORCH-STATE-722': {
    message: 'log records lost on a node',
    recovery:
      "The node dropped them before shipping: its spool was full (offline longer than --log-spool-max-bytes holds) or it logged over its own rate budget. The node's local log files still have them.",
    status: 'DATA_LOSS',
    retryable: false,
  },
  'ORCH-STATE-723': {
    message: 'log records missing from a node',
    recovery:
      "The node's sequence jumped without saying why, or started over (`reason=restarted`: its spool and sequence state were deleted, " +
      "or the board was restored from an image). The node's local log files may still have what is missing; shipping goes on by itself.",
    status: 'DATA_LOSS',
    retryable: false,
  },
  'ORCH-STATE-724': {
    message: "a node's log batch was not stored",
    recovery: 'Redis did not take it (unreachable, or no answer within 5 s). Nothing is lost: the batch was not acknowledged, so the node keeps it in its spool and sends it again.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
});
