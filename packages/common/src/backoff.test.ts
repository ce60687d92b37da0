import { describe, expect, it } from 'vitest';
import { Backoff, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_CAP_MS, backoffDelayMs, retry, sleep } from './backoff.js';

const one = (): number => 0.999_999;

describe('backoffDelayMs', () => {
  it('is random times min(cap, base * 2^attempt)', () => {
    expect(DEFAULT_BACKOFF_BASE_MS).toBe(250);
    expect(DEFAULT_BACKOFF_CAP_MS).toBe(30_000);
    expect(backoffDelayMs(0, { random: () => 0.5 })).toBe(125);
    expect(backoffDelayMs(3, { random: () => 0.5 })).toBe(1000);
    expect(backoffDelayMs(20, { random: () => 0.5 })).toBe(15_000);
    expect(backoffDelayMs(5000, { random: () => 1 })).toBe(30_000);
    expect(backoffDelayMs(2, { baseMs: 10, capMs: 25, random: () => 1 })).toBe(25);
    expect(backoffDelayMs(0, { random: () => 0 })).toBe(0);
  });

  it('stays in [0, ceiling) with Math.random', () => {
    for (let attempt = 0; attempt < 20; attempt += 1) {
      const delay = backoffDelayMs(attempt);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(Math.min(30_000, 250 * 2 ** attempt));
    }
  });
});

describe('Backoff', () => {
  it('doubles the ceiling per call and starts over on reset', () => {
    const backoff = new Backoff({ baseMs: 100, capMs: 1000, random: () => 1 });
    expect([backoff.next(), backoff.next(), backoff.next(), backoff.next(), backoff.next()]).toEqual([100, 200, 400, 800, 1000]);
    expect(backoff.attempt).toBe(5);
    backoff.reset();
    expect(backoff.attempt).toBe(0);
    expect(backoff.next()).toBe(100);
  });
});

describe('sleep', () => {
  it('waits, and rejects with the abort reason', async () => {
    const started = Date.now();
    await sleep(20);
    expect(Date.now() - started).toBeGreaterThanOrEqual(15);
    const controller = new AbortController();
    const pending = sleep(10_000, controller.signal);
    controller.abort(new Error('stopping'));
    await expect(pending).rejects.toThrow('stopping');
    await expect(sleep(1, AbortSignal.abort())).rejects.toMatchObject({ name: 'AbortError' });
  });
});

describe('retry', () => {
  it('retries until success and reports each retry', async () => {
    const seen: Array<[string, number, number]> = [];
    const result = await retry(
      async (attempt) => {
        if (attempt < 2) throw new Error(`fail ${attempt}`);
        return 'ok';
      },
      { baseMs: 4, random: one, onRetry: (err, attempt, delayMs) => seen.push([(err as Error).message, attempt, Math.round(delayMs)]) },
    );
    expect(result).toBe('ok');
    expect(seen).toEqual([
      ['fail 0', 1, 4],
      ['fail 1', 2, 8],
    ]);
  });

  it('throws the last error when retries run out', async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls += 1;
          throw new Error(`fail ${calls}`);
        },
        { retries: 2, baseMs: 1 },
      ),
    ).rejects.toThrow('fail 3');
    expect(calls).toBe(3);
  });

  it('gives up at once when shouldRetry says no', async () => {
    let calls = 0;
    const bad = new Error('bad input');
    await expect(
      retry(
        async () => {
          calls += 1;
          throw bad;
        },
        { shouldRetry: (err) => err !== bad },
      ),
    ).rejects.toBe(bad);
    expect(calls).toBe(1);
  });

  it('stops waiting when aborted', async () => {
    const controller = new AbortController();
    const pending = retry(
      async () => {
        throw new Error('down');
      },
      { retries: Infinity, baseMs: 60_000, random: one, signal: controller.signal, onRetry: () => controller.abort(new Error('shutdown')) },
    );
    await expect(pending).rejects.toThrow('shutdown');
  });
});
