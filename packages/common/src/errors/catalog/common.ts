import { defineErrors } from './define-errors.js';

/** Errors raised by @conclave/common itself: the Redis launcher and configuration loading. */
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
      'The connection is retried with exponential backoff and full jitter (base 250 ms, cap 30 s); ' +
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
});
