import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { captureLogger } from '@conclave/common';
import { MemoryGuard } from './memory-guard.js';
import { FixedMemoryProbe, SystemMemoryProbe, type MemorySample } from './memory-probe.js';

describe('MemoryGuard', () => {
  it('moves between ok, soft and hard, logs each change and calls onHard once per entry', () => {
    const probe = new FixedMemoryProbe({ limitBytes: 1000, usedBytes: 100 });
    const logs = captureLogger('MODEL');
    const hard: MemorySample[] = [];
    const guard = new MemoryGuard({
      probe,
      logger: logs.logger,
      softThreshold: 0.9,
      hardThreshold: 0.95,
      marginBytes: 50,
      sampleIntervalMs: 1000,
      summaryIntervalMs: 60_000,
      onHard: (s) => hard.push(s),
    });
    expect(guard.check()).toBe('ok');
    probe.set({ usedBytes: 900 });
    expect(guard.check()).toBe('soft');
    probe.set({ usedBytes: 960 });
    expect(guard.check()).toBe('hard');
    expect(guard.check()).toBe('hard');
    expect(hard).toHaveLength(1);
    probe.set({ usedBytes: 960, limitBytes: 10_000 });
    expect(guard.check()).toBe('ok');
    // The absolute margin: 20 bytes free is soft pressure whatever the ratio says.
    probe.set({ usedBytes: 9_980 });
    expect(guard.check()).toBe('hard');
    probe.set({ usedBytes: 100, limitBytes: 120 });
    expect(guard.check()).toBe('soft');
    expect(guard.ratio()).toBeCloseTo(0.833, 3);
    expect(logs.lines.filter((l) => l.includes('MODEL-MEM'))).toHaveLength(5);
  });
});

describe('SystemMemoryProbe', () => {
  it('reads a cgroup v2 limit and working set', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cgroup-'));
    writeFileSync(join(dir, 'memory.max'), `${512 * 2 ** 20}\n`);
    writeFileSync(join(dir, 'memory.current'), `${300 * 2 ** 20}\n`);
    writeFileSync(join(dir, 'memory.stat'), `anon 1\ninactive_file ${100 * 2 ** 20}\nactive_file 5\n`);
    const sample = new SystemMemoryProbe(dir).sample();
    expect(sample).toMatchObject({ limitBytes: 512 * 2 ** 20, usedBytes: 200 * 2 ** 20 });
    expect(sample.rssBytes).toBeGreaterThan(0);
  });

  it('falls back to host memory without a cgroup limit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cgroup-'));
    writeFileSync(join(dir, 'memory.max'), 'max\n');
    const sample = new SystemMemoryProbe(dir).sample();
    expect(sample.limitBytes).toBeGreaterThan(sample.usedBytes);
    expect(sample.usedBytes).toBeGreaterThan(0);
  });
});
