/** First delay ceiling of the DESIGN's transient-network policy. */
export const DEFAULT_BACKOFF_BASE_MS = 250;
/** No delay ever exceeds this. */
export const DEFAULT_BACKOFF_CAP_MS = 30_000;
export const DEFAULT_RETRIES = 5;

export interface BackoffOptions {
  /** @default DEFAULT_BACKOFF_BASE_MS (250) */
  baseMs?: number;
  /** @default DEFAULT_BACKOFF_CAP_MS (30 000) */
  capMs?: number;
  /** A number in [0, 1); injected by tests. @default Math.random */
  random?: () => number;
}

/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff And Jitter"): uniform in [0, min(cap, base·2^attempt)). Full jitter
 * spreads a fleet of reconnecting nodes instead of letting them retry in step.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}): number {
  const baseMs = options.baseMs ?? DEFAULT_BACKOFF_BASE_MS;
  const capMs = options.capMs ?? DEFAULT_BACKOFF_CAP_MS;
  const random = options.random ?? Math.random;
  // 2^attempt overflows to Infinity past ~1023; min() still yields the cap.
  const ceilingMs = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
  return random() * ceilingMs;
}

/** Successive delays for one retry loop; `reset()` after a success. */
export class Backoff {
  #attempt = 0;

  constructor(private readonly options: BackoffOptions = {}) {}

  /** How many delays have been handed out since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  next(): number {
    const delayMs = backoffDelayMs(this.#attempt, this.options);
    this.#attempt += 1;
    return delayMs;
  }

  reset(): void {
    this.#attempt = 0;
  }
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** Resolves after `ms`; rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface RetryOptions extends BackoffOptions {
  /** Retries after the first attempt; Infinity retries until success or abort. @default DEFAULT_RETRIES (5) */
  retries?: number;
  signal?: AbortSignal;
  /** Return false to give up at once (bad input, authentication). @default every error is retried */
  shouldRetry?: (err: unknown) => boolean;
  /** Called before each wait; `attempt` counts from 1. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Calls `fn` until it resolves, waiting a full-jitter backoff between tries.
 * Throws the last error when retries run out or `shouldRetry` says no, and the
 * abort reason when `signal` aborts.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const retries = options.retries ?? DEFAULT_RETRIES;
  const backoff = new Backoff(options);
  for (let attempt = 0; ; attempt += 1) {
    if (options.signal?.aborted) throw abortReason(options.signal);
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= retries || (options.shouldRetry && !options.shouldRetry(err))) throw err;
      if (options.signal?.aborted) throw abortReason(options.signal);
      const delayMs = backoff.next();
      options.onRetry?.(err, attempt + 1, delayMs);
      await sleep(delayMs, options.signal);
    }
  }
}
