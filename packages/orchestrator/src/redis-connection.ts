import { Redis } from 'ioredis';
import { Backoff, ConclaveError, maskUrlCredentials } from '@conclave/common';
import type { Logger } from '@conclave/common';

export interface RedisConnectOptions {
  url: string;
  logger: Logger;
  /** Stops the start-up retry loop. */
  signal?: AbortSignal;
}

/**
 * Opens an ioredis connection suitable for BullMQ (`maxRetriesPerRequest: null`) and waits
 * until Redis answers. ioredis retries with full-jitter backoff; until the first success every
 * retry is logged with the reason of the last failure.
 */
export async function connectRedis(options: RedisConnectOptions): Promise<Redis> {
  const { url, logger, signal } = options;
  const redisForLog = maskUrlCredentials(url);
  const backoff = new Backoff();
  const redis = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: () => backoff.next() });
  let everReady = false;
  let lastError = '';
  redis.on('error', (err: Error) => {
    const repeated = err.message === lastError;
    lastError = err.message;
    // Before the first connection the reconnect lines below say it all; after it, ioredis
    // repeats the same error on every retry, so each distinct one is logged once.
    if (everReady && !repeated) {
      logger.failure(new ConclaveError('ORCH-NET-601', { detail: err.message, cause: err }), { redis: redisForLog }, 'warn');
    }
  });
  redis.on('reconnecting', (delayMs: number) => {
    if (!everReady) {
      logger.failure(new ConclaveError('ORCH-NET-601', { detail: lastError || 'no answer' }), { redis: redisForLog, delayMs: Math.round(delayMs) }, 'warn');
    }
  });
  redis.on('ready', () => {
    if (everReady) logger.info('NET', 'reconnected to redis', { redis: redisForLog });
    everReady = true;
    backoff.reset();
  });
  await new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      redis.disconnect();
      reject(new ConclaveError('ORCH-NET-601', { detail: `start-up cancelled; last error: ${lastError}` }));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    redis.once('ready', () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
  });
  logger.info('NET', 'connected to redis', { redis: redisForLog });
  return redis;
}
