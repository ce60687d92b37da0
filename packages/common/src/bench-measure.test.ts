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

  it.runIf(process.platform === 'linux')('counts the CPU this process spends, per thread and in all', () => {
    const before = processCpuNanos(process.pid);
    const threadsBefore = threadCpuNanos(process.pid);
    const until = Date.now() + 60;
    let spin = 0;
    while (Date.now() < until) spin++;
    expect(spin).toBeGreaterThan(0);
    const spent = processCpuNanos(process.pid) - before;
    // 60 ms of wall time on this thread: at least half of it on a CPU even on a loaded machine,
    // and the total is not in 10 ms ticks.
    expect(spent).toBeGreaterThan(30e6);
    expect(spent % 10e6).not.toBe(0);
    const main = (threadCpuNanos(process.pid).get(process.pid) ?? 0) - (threadsBefore.get(process.pid) ?? 0);
    expect(main).toBeGreaterThan(30e6);
  });
});
