import { describe, expect, it } from 'vitest';
import { isConclaveError } from '@conclave/common';
import { RequestQueue } from './request-queue.js';

describe('RequestQueue', () => {
  it('runs up to the concurrency, queues up to the limit, refuses beyond', async () => {
    const q = new RequestQueue(1, 1);
    const first = await q.acquire();
    const second = q.acquire();
    expect(q.waiting).toBe(1);
    const third = await q.acquire().catch((e: unknown) => e);
    expect(isConclaveError(third) && third.code).toBe('MODEL-REQ-201');
    first();
    const release2 = await second;
    expect(q.running).toBe(1);
    expect(q.waiting).toBe(0);
    release2();
    release2();
    expect(q.running).toBe(0);
  });

  it('drops a waiter whose signal aborts', async () => {
    const q = new RequestQueue(1, 5);
    const first = await q.acquire();
    const controller = new AbortController();
    const waiting = q.acquire(controller.signal);
    controller.abort(new Error('gone'));
    await expect(waiting).rejects.toThrow('gone');
    expect(q.waiting).toBe(0);
    first();
    expect(q.running).toBe(0);
  });
});
