import { ConclaveError } from '@conclave/common';

/** Gives back the slot; idempotent. */
export type ReleaseSlot = () => void;

interface Waiter {
  grant: (release: ReleaseSlot) => void;
  reject: (err: unknown) => void;
}

/**
 * Admission: `concurrency` requests run, `queueLimit` wait in FIFO order, and
 * anything beyond is refused at once (MODEL-REQ-201, HTTP 429) rather than
 * piling up memory in an unbounded queue.
 */
export class RequestQueue {
  private runningCount = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    private readonly concurrency: number,
    private readonly queueLimit: number,
  ) {}

  get running(): number {
    return this.runningCount;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  acquire(signal?: AbortSignal): Promise<ReleaseSlot> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.runningCount < this.concurrency) {
      this.runningCount++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiters.length >= this.queueLimit) {
      return Promise.reject(
        new ConclaveError('MODEL-REQ-201', {
          detail: `${this.runningCount} running and ${this.waiters.length} waiting (limits ${this.concurrency} + ${this.queueLimit})`,
          data: { running: this.runningCount, waiting: this.waiters.length },
        }),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
        reject,
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private releaser(): ReleaseSlot {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      // The slot passes straight to the next waiter, so running never dips and lets a newcomer jump the queue.
      if (next) next.grant(this.releaser());
      else this.runningCount--;
    };
  }
}
