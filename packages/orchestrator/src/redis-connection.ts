import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ConclaveError, backoffDelayMs, maskUrlCredentials } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { writeSecretFileOnce } from './secret-file.js';

/** File name of the embedded redis-server's password inside the orchestrator's data dir, beside the operator token. */
export const REDIS_PASSWORD_FILE = 'redis-password';

/** 32 random bytes, as the operator token: not guessable, and base64url needs no quoting anywhere. */
const REDIS_PASSWORD_BYTES = 32;
const REDIS_PASSWORD_TEXT = /^[A-Za-z0-9_-]{32,}$/;

/**
 * The embedded redis-server's password: `<dataDir>/redis-password`, generated at first start
 * (32 random bytes, base64url) with mode 0600 the way the operator token is. A file that group or
 * others may read, or that holds no such password, is refused with ORCH-AUTH-562. Only the
 * orchestrator reads it; redis-server gets it through its own 0600 config file at each start.
 */
export function loadOrCreateRedisPassword(dataDir: string): string {
  const path = join(dataDir, REDIS_PASSWORD_FILE);
  try {
    return readRedisPasswordFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const password = randomBytes(REDIS_PASSWORD_BYTES).toString('base64url');
  return writeSecretFileOnce(path, password) ? password : readRedisPasswordFile(path);
}

function readRedisPasswordFile(path: string): string {
  const info = statSync(path);
  const refuse = (detail: string): ConclaveError => new ConclaveError('ORCH-AUTH-562', { detail: `${path} ${detail}`, data: { path } });
  if (!info.isFile()) throw refuse('is not a regular file');
  if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) throw refuse(`has mode ${(info.mode & 0o777).toString(8).padStart(4, '0')}`);
  const password = readFileSync(path, 'utf8').trim();
  if (!REDIS_PASSWORD_TEXT.test(password)) throw refuse('holds no password of 32 or more base64url characters');
  return password;
}

/**
 * Whether the connection can serve a command right now. ioredis queues commands while it
 * reconnects (maxRetriesPerRequest: null, for BullMQ), so a caller that must answer promptly —
 * a Control API handler — checks this first and fails fast with ORCH-STATE-710 instead of
 * waiting for Redis to come back.
 */
export function redisAvailable(redis: Pick<Redis, 'status'>): boolean {
  return redis.status === 'ready';
}

export interface RedisConnectOptions {
  url: string;
  logger: Logger;
  /** Stops the start-up retry loop. */
  signal?: AbortSignal;
}

/**
 * What Redis answers when it refuses the credentials: WRONGPASS (Redis 6+, wrong password or
 * ACL user), NOAUTH (no password sent; ioredis reports it as "Ready check failed: NOAUTH …"),
 * "ERR invalid password" (Redis 5 and older).
 */
const AUTH_REFUSED = /\bWRONGPASS\b|\bNOAUTH\b|\binvalid password\b/;

/**
 * What Redis answers to AUTH when it needs no password at all (Redis 6+ and Redis 5). The
 * server accepts the connection and every command, so this is not an auth failure.
 */
const NO_PASSWORD_CONFIGURED = /without any password configured|no password is set/;

/** The URL for logs: the password replaced by `***`, also when it holds an unescaped `@` or `/`. */
function urlForLog(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return maskUrlCredentials(parsed.href);
  } catch {
    return maskUrlCredentials(url);
  }
}

/**
 * A copy of an ioredis error for `cause`: ioredis attaches the failed command to a reply error
 * (`err.command.args`), which for AUTH is the password, and util.inspect would print it.
 */
function withoutCommand(err: Error): Error {
  const copy = new Error(err.message);
  copy.name = err.name;
  if (err.stack !== undefined) copy.stack = err.stack;
  return copy;
}

function authRefused(err: Error, redisForLog: string): ConclaveError {
  const hint = /\bNOAUTH\b/.test(err.message)
    ? 'the URL has no password and the server requires one'
    : 'wrong password or ACL user';
  return new ConclaveError('ORCH-AUTH-558', {
    detail: `${redisForLog} answered "${err.message}" (${hint})`,
    data: { redis: redisForLog },
    cause: withoutCommand(err),
  });
}

/**
 * The longest wait between two reconnect attempts to Redis. Redis is the fleet's state: once it
 * is back (an embedded one restarts within 2 s) the orchestrator must be too, not after a
 * backoff that grew while it was away.
 */
export const REDIS_RECONNECT_CAP_MS = 2_000;

/**
 * Opens an ioredis connection suitable for BullMQ (`maxRetriesPerRequest: null`) and waits
 * until Redis answers. ioredis retries with full-jitter backoff; until the first success every
 * retry is logged with the reason of the last failure.
 *
 * Refused credentials before the first success reject at once with ORCH-AUTH-558 and leave the
 * client disconnected: a wrong password does not become right by retrying. A password given to
 * a Redis that needs none connects, with a warning.
 */
export async function connectRedis(options: RedisConnectOptions): Promise<Redis> {
  const { url, logger, signal } = options;
  const redisForLog = urlForLog(url);
  // ioredis counts attempts per connection (`times`, reset when it connects) and BullMQ's
  // duplicates copy this function: a shared counter would let one connection's retries lengthen
  // another's wait, up to the cap, after Redis was long back.
  const redis = new Redis(url, {
    maxRetriesPerRequest: null, retryStrategy: (times: number) => backoffDelayMs(times - 1, { capMs: REDIS_RECONNECT_CAP_MS }),
  });
  let everReady = false;
  let lastError = '';
  let failStartup: ((err: ConclaveError) => void) | undefined;
  redis.on('error', (err: Error) => {
    const repeated = err.message === lastError;
    lastError = err.message;
    if (AUTH_REFUSED.test(err.message)) {
      if (!everReady) {
        failStartup?.(authRefused(err, redisForLog));
        return;
      }
      // Once running, Redis refusing us means it restarted with other credentials. The
      // orchestrator keeps retrying with backoff (ioredis reconnects, every REDIS_RECONNECT_CAP_MS
      // at most) and logs every refusal at error level: exiting
      // would drop every node session, and a running orchestrator should come back by itself
      // once the operator puts the old credentials back. A new password needs a restart anyway.
      logger.failure(authRefused(err, redisForLog), {}, 'error');
      return;
    }
    // Before the first connection the reconnect lines below say it all; after it, ioredis
    // repeats the same error on every retry, so each distinct one is logged once.
    if (everReady && !repeated) {
      logger.failure(new ConclaveError('ORCH-NET-601', { detail: err.message, cause: withoutCommand(err) }), { redis: redisForLog }, 'warn');
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
  });
  await new Promise<void>((resolve, reject) => {
    const fail = (err: ConclaveError): void => {
      failStartup = undefined;
      signal?.removeEventListener('abort', onAbort);
      redis.off('ready', onReady);
      // Sets ioredis's manual-close flag and clears a pending reconnect timer, so the close that
      // follows schedules no retry (the disconnect(true) ioredis itself calls next is then a no-op).
      redis.disconnect();
      reject(err);
    };
    const onAbort = (): void => fail(new ConclaveError('ORCH-NET-601', { detail: `start-up cancelled; last error: ${lastError}` }));
    const onReady = (): void => {
      failStartup = undefined;
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    if (signal?.aborted) return onAbort();
    failStartup = fail;
    signal?.addEventListener('abort', onAbort, { once: true });
    redis.once('ready', onReady);
  });
  await warnIfPasswordUnused(redis, logger, redisForLog);
  logger.info('NET', 'connected to redis', { redis: redisForLog });
  return redis;
}

/**
 * ioredis swallows the AUTH error of a server that needs no password (it only console.warns),
 * so the AUTH is sent once more to find out. Not an error: the server accepts every command,
 * and failing would stop an orchestrator whose Redis merely dropped its requirepass. But it is
 * worth a warning: the operator believes Redis is protected, or the URL names the wrong Redis.
 */
async function warnIfPasswordUnused(redis: Redis, logger: Logger, redisForLog: string): Promise<void> {
  const { username, password } = redis.options;
  // ioredis leaves the password null, not undefined, when the URL has none.
  if (password === undefined || password === null || password === '') return;
  try {
    await (username ? redis.auth(username, password) : redis.auth(password));
  } catch (err) {
    const reply = err instanceof Error ? err.message : String(err);
    if (NO_PASSWORD_CONFIGURED.test(reply)) {
      logger.warn('AUTH', 'redis requires no password; the one in the URL is ignored', { redis: redisForLog, reply });
    }
  }
}
