import { Redis } from 'ioredis';
import { Backoff, ConclaveError, maskUrlCredentials, sleep } from '@conclave/common';
import type { Logger } from '@conclave/common';

export interface RedisConnectOptions {
  url: string;
  logger: Logger;
  /** Stops the start-up retry loop. */
  signal?: AbortSignal;
}

/**
 * Opens an ioredis connection suitable for BullMQ (`maxRetriesPerRequest: null`) and waits
 * until Redis answers, retrying with full-jitter backoff and logging why each attempt failed.
 * Later disconnects are retried by ioredis itself with the same backoff.
 */
export async function connectRedis(options: RedisConnectOptions): Promise<Redis> {
  const { url, logger, signal } = options;
  const reconnectBackoff = new Backoff();
  const redis = new Redis(url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    lazyConnect: true,
    retryStrategy: () => reconnectBackoff.next(),
  });
  redis.on('ready', () => reconnectBackoff.reset());
  let lastError = '';
  redis.on('error', (err: Error) => {
    // ioredis repeats the same error on every retry; log each distinct one once.
    if (err.message === lastError) return;
    lastError = err.message;
    logger.failure(new ConclaveError('ORCH-NET-601', { detail: err.message, cause: err }), { redis: maskUrlCredentials(url) }, 'warn');
  });
  const startBackoff = new Backoff();
  for (;;) {
    try {
      if (redis.status === 'wait' || redis.status === 'end') await redis.connect();
      await redis.ping();
      logger.info('NET', 'connected to redis', { redis: maskUrlCredentials(url) });
      return redis;
    } catch (err) {
      if (signal?.aborted) {
        redis.disconnect();
        throw new ConclaveError('ORCH-NET-601', { detail: 'start-up cancelled', cause: err });
      }
      const delayMs = startBackoff.next();
      logger.warn('NET', 'redis not reachable yet, retrying', { redis: maskUrlCredentials(url), delayMs, err });
      await sleep(delayMs, signal).catch(() => undefined);
    }
  }
}
