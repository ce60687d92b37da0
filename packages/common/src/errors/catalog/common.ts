import { defineErrors } from './define-errors.js';

/** Errors raised by @conclave/common itself, and the start-up failures every executable shares: the Redis launcher, configuration, the data dir lock, ports, the command line. */
export const COMMON_ERRORS = defineErrors({
  'ORCH-STATE-701': {
    message: 'redis-server not found',
    recovery:
      'Install Redis (`apt-get install redis-server` or `brew install redis`), put redis-server on PATH, ' +
      'or pass --redis-url to use a Redis that is already running.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-STATE-702': {
    message: 'redis-server exited or failed to start',
    recovery:
      'Read the tail of redis.log included in the error (port in use, bad directory permissions, ' +
      'unreadable AOF); fix the cause and start again, or pass --redis-url.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-NET-601': {
    message: 'Redis unreachable',
    recovery:
      'The connection is retried with exponential backoff and full jitter (base 250 ms, cap 2 s, per connection); ' +
      'check that Redis is running and that --redis-url points at it.',
    status: 'UNAVAILABLE',
    retryable: true,
  },
  'ORCH-STATE-703': {
    message: 'invalid orchestrator configuration',
    recovery: 'Fix the listed keys in the flags, CONCLAVE_* environment variables or config file, then start again.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'NODE-STATE-703': {
    message: 'invalid node agent configuration',
    recovery: 'Fix the listed keys in the flags, CONCLAVE_* environment variables or config file, then start again.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'MODEL-STATE-703': {
    message: 'invalid model server configuration',
    recovery: 'Fix the listed keys in the flags, CONCLAVE_* environment variables or config file, then start again.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-STATE-704': {
    message: 'data dir in use by another process',
    recovery:
      'Another orchestrator (or the local fleet) holds this data dir; the message names its pid. Stop it, ' +
      'or give this one its own --data-dir. A lock left by a process that is gone is taken over on its own.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'NODE-STATE-704': {
    message: 'data dir in use by another process',
    recovery:
      'Another node agent holds this data dir; the message names its pid. Stop it, or give this one its own ' +
      '--data-dir (each agent is one node identity). A lock left by a process that is gone is taken over on its own.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'MODEL-STATE-704': {
    message: 'data dir in use by another process',
    recovery:
      'Another model server holds this data dir; the message names its pid. Stop it, or give this one its own ' +
      '--data-dir. A lock left by a process that is gone is taken over on its own.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-STATE-705': {
    message: 'command line not understood',
    recovery: 'Fix the command or flag named in the message; `orchestrator --help` and `orchestrator <command> --help` list them.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'NODE-STATE-705': {
    message: 'command line not understood',
    recovery: 'Fix the command or flag named in the message; `node-agent start --help` lists them.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'MODEL-STATE-705': {
    message: 'command line not understood',
    recovery: 'Fix the command or flag named in the message; `model-server start --help` lists them.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-STATE-706': {
    message: 'data dir unusable',
    recovery: 'The orchestrator needs a writable directory for its key, models, logs and embedded Redis; fix the --data-dir path or its permissions.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'MODEL-STATE-706': {
    message: 'data dir unusable',
    recovery: 'The model server needs a writable directory for its node identity and outbox when it joins a fleet; fix the --data-dir path or its permissions.',
    status: 'FAILED_PRECONDITION',
    retryable: false,
  },
  'ORCH-AUTH-557': {
    message: 'TLS certificate or key unusable',
    recovery: 'Give --tls-cert and --tls-key readable PEM files: a certificate chain and the private key that belongs to it.',
    status: 'INVALID_ARGUMENT',
    retryable: false,
  },
  'ORCH-AUTH-558': {
    message: 'Redis refused the credentials',
    recovery: 'The password (or user) in --redis-url (env CONCLAVE_REDIS_URL) is wrong or missing; fix it and start again. Not retried: a wrong password does not become right.',
    status: 'UNAUTHENTICATED',
    retryable: false,
  },
  'ORCH-NET-605': {
    message: 'HTTP port unavailable',
    recovery: 'Another process holds the HTTP port (health, metrics); stop it, pass another --http-port (env CONCLAVE_HTTP_PORT), 0 for any free port, or -1 to turn HTTP off.',
    status: 'UNAVAILABLE',
    retryable: false,
  },
  'NODE-NET-604': {
    message: 'local HTTP port unavailable',
    recovery: 'Another process holds the node agent\'s local HTTP port (often a second agent on this host); pass another --http-port (env CONCLAVE_HTTP_PORT), 0 for any free port, or -1 to turn it off.',
    status: 'UNAVAILABLE',
    retryable: false,
  },
  'MODEL-NET-604': {
    message: 'HTTP port unavailable',
    recovery: 'Another process holds the model server\'s port; stop it or pass another --port (env CONCLAVE_MODEL_PORT), 0 for any free port.',
    status: 'UNAVAILABLE',
    retryable: false,
  },
  'ORCH-STATE-707': {
    message: 'unexpected orchestrator failure',
    recovery: 'An unexpected failure with no code of its own; the message carries its cause. Fix what it names, or report it with the log.',
    status: 'INTERNAL',
    retryable: false,
  },
  'NODE-STATE-707': {
    message: 'unexpected node agent failure',
    recovery: 'An unexpected failure with no code of its own; the message carries its cause. Fix what it names, or report it with the log.',
    status: 'INTERNAL',
    retryable: false,
  },
  'MODEL-STATE-707': {
    message: 'unexpected model server failure',
    recovery: 'An unexpected failure with no code of its own; the message carries its cause. Fix what it names, or report it with the log.',
    status: 'INTERNAL',
    retryable: false,
  },
});
