import type { Redis } from 'ioredis';
import { ConclaveError } from '@conclave/common';
import { redisAvailable } from './redis-connection.js';

/**
 * How long a Control call may wait on Redis before it is answered ORCH-STATE-710. ioredis
 * queues commands while it reconnects; without a bound a call would hang until the client's
 * deadline, and the CLI would then report the orchestrator unreachable although it runs.
 */
export const STATE_CALL_TIMEOUT_MS = 5_000;

/** Runs work that needs Redis: refused at once while Redis is not connected, and bounded in time. */
export type StateStoreGuard = <T>(work: () => Promise<T>) => Promise<T>;

export function stateStoreGuard(redis: Pick<Redis, 'status'>, timeoutMs = STATE_CALL_TIMEOUT_MS): StateStoreGuard {
  return async <T>(work: () => Promise<T>): Promise<T> => {
    if (!redisAvailable(redis)) {
      throw new ConclaveError('ORCH-STATE-710', { detail: `Redis connection is ${redis.status}` });
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ConclaveError('ORCH-STATE-710', { detail: `Redis did not answer within ${timeoutMs} ms` })), timeoutMs);
    });
    try {
      return await Promise.race([work(), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  };
}

/** A guard that guards nothing: for services tested without Redis. */
export const UNGUARDED: StateStoreGuard = (work) => work();
