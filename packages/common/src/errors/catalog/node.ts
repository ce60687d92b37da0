import { defineErrors } from './define-errors.js';

/** Node agent errors outside inference (owner: the lead). */
export const NODE_ERRORS = defineErrors({
  'NODE-NET-601': {
    message: 'orchestrator unreachable',
    recovery:
      'The agent reconnects with exponential backoff and full jitter (base 250 ms, cap 4 s) and keeps ' +
      'results and logs in its outbox meanwhile; check the address in the join string and the network.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'NODE-NET-602': {
    message: 'session closed by the orchestrator',
    recovery: 'The agent reconnects with backoff; in-flight results stay in the outbox and are sent again.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'NODE-NET-603': {
    message: 'model transfer failed',
    recovery: 'The partial file is kept and the transfer resumes from its offset on the next attempt.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'NODE-NET-605': {
    message: 'orchestrator session protocol violation',
    recovery: 'The session is closed (a message out of place, or one that does not decode) and the agent reconnects; check that agent and orchestrator versions match.',
    status: 'FAILED_PRECONDITION',
    retryable: true,
  },
  'NODE-LOAD-151': {
    message: 'the orchestrator cannot serve the model file',
    recovery: 'The orchestrator reported a permanent error for this model (its file is missing or unreadable there); the job fails at once. Add the model again on the orchestrator.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-AUTH-580': {
    message: "orchestrator TLS certificate does not match the join string's fingerprint",
    recovery:
      'The agent refuses to connect (no retry loop): something other than the orchestrator answered, or its ' +
      'certificate was replaced. If the operator renewed it, join again with a new join string from ' +
      '`orchestrator token create`, or start with --tls-ca.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'NODE-AUTH-581': {
    message: 'TLS CA file unusable',
    recovery: 'Give --tls-ca (env CONCLAVE_TLS_CA) a readable PEM file: the CA that signed the orchestrator certificate, or that certificate itself.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'NODE-STATE-701': {
    message: 'data dir unusable',
    recovery: 'The agent needs a writable data dir for its identity, models and outbox; fix the path or permissions.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-STATE-702': {
    message: 'node has not joined an orchestrator',
    recovery: 'Create a join string with `orchestrator token create` and start the agent once with --join; later starts need no token.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-STATE-708': {
    message: 'outbox could not write an unacknowledged result',
    recovery:
      'The result stays in memory, is sent again while connected and written again when the session drops; ' +
      'free space in (or fix the permissions of) <data-dir>/outbox: a result held only in memory is lost if the ' +
      'agent restarts, and the orchestrator then runs that job again.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'NODE-STATE-709': {
    message: 'outbox could not drop an acknowledged result',
    recovery:
      'The agent keeps running. A file left in <data-dir>/outbox is sent again at the next start and the ' +
      'orchestrator records each job:attempt once; an acknowledgement naming a job id that is not a file name ' +
      'is ignored. Check the permissions of <data-dir>/outbox.',
    status: 'INTERNAL',
    retryable: false,
  },
  'NODE-STATE-720': {
    message: 'log spool full: the oldest unshipped log records were dropped',
    recovery:
      'The node keeps its newest records within logSpoolMaxBytes (--log-spool-max-bytes, default 64 MiB) and ' +
      'the orchestrator shows a gap record with the count; the rotated files in <data-dir>/logs still have every ' +
      'record. The link was down long, or the node logs faster than it ships: check the link, raise the bound, ' +
      'or raise --log-ship-level.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'NODE-STATE-721': {
    message: 'log spool could not be written',
    recovery:
      'Records wait in memory (up to 4 MiB; more are counted and shown as a gap) and the write is tried again ' +
      'every second; the rotated files in <data-dir>/logs still have every record. Free space in (or fix the ' +
      'permissions of) <data-dir>/log-spool.',
    status: 'RESOURCE_EXHAUSTED',
    retryable: true,
  },
  'NODE-JOB-801': {
    message: 'job cancelled',
    recovery: 'The orchestrator cancelled the job (timeout or client request); nothing to do.',
    status: 'CANCELLED',
    retryable: false,
  },
  'NODE-JOB-802': {
    message: 'job failed on the node',
    recovery: 'An unexpected failure while running the job; it is retried on another node with backoff.',
    status: 'INTERNAL',
    retryable: true,
  },
  'NODE-JOB-803': {
    message: 'job kind not supported by this node',
    recovery: 'The scheduler should not send it here; the job is retried on a node that has the capability.',
    status: 'FAILED_PRECONDITION',
    retryable: true,
  },
});
