import { describe, expect, it } from 'vitest';
import { percentile, percentileOf, processCpuNanos, threadCpuNanos } from './bench-measure.js';

describe('bench measurements', () => {
  it('takes nearest-rank percentiles', () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentile(sorted, 0.5)).toBe(5);
    expect(percentile(sorted, 0.99)).toBe(10);
    expect(percentile(sorted, 0)).toBe(1);
    expect(percentile([], 0.5)).toBeNaN();
    expect(percentileOf([10, 1, 5, 3], 0.5)).toBe(3);
  });

  it.runIf(process.platform === 'linux')('counts the CPU this process spends, per thread and in all, not the time that passes', async () => {
    const before = processCpuNanos(process.pid);
    const threadsBefore = threadCpuNanos(process.pid);
    // Busy until Node's own counter says 60 ms of CPU were spent (not 60 ms of wall time: on a
    // loaded machine those can hold much less CPU), at most 5 s.
    const cpuBefore = process.cpuUsage();
    const giveUpAt = Date.now() + 5_000;
    while (Date.now() < giveUpAt) {
      const used = process.cpuUsage(cpuBefore);
      if (used.user + used.system >= 60_000) break;
    }
    const spent = processCpuNanos(process.pid) - before;
    // The /proc counters see those 60 ms (at least half, whatever the clock ticks), and the
    // total is not in 10 ms ticks.
    expect(spent).toBeGreaterThan(30e6);
    expect(spent % 10e6).not.toBe(0);
    const main = (threadCpuNanos(process.pid).get(process.pid) ?? 0) - (threadsBefore.get(process.pid) ?? 0);
    expect(main).toBeGreaterThan(30e6);

    // Asleep for 100 ms, the process uses next to no CPU: a clock in place of the counters fails here.
    // The main thread is the test: the process's other threads (V8's GC helpers, after the burn
    // above) may run meanwhile, as CI saw (60 ms of 100), but all of them stay under the wall time.
    const idleBefore = processCpuNanos(process.pid);
    const idleThreadBefore = threadCpuNanos(process.pid).get(process.pid) ?? 0;
    const wallBefore = process.hrtime.bigint();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const wallNanos = Number(process.hrtime.bigint() - wallBefore);
    expect((threadCpuNanos(process.pid).get(process.pid) ?? 0) - idleThreadBefore).toBeLessThan(50e6);
    expect(processCpuNanos(process.pid) - idleBefore).toBeLessThan(0.9 * wallNanos);
  });
});
