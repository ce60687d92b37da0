import { describe, expect, it } from 'vitest';
import type { WireTensor } from '@conclave/protocol';
import { compareOutputs, describeVerdict, goldenInputs } from './golden-check.js';
import { RunStats } from './run-stats.js';

const f32 = (...values: number[]): WireTensor => ({ dtype: 'float32', dims: [values.length], raw: Buffer.from(Float32Array.from(values).buffer) });

describe('goldenInputs', () => {
  it('fills each declared input with the same bytes every time, one frame for a symbolic dimension', () => {
    const specs = [
      { name: 'image', dtype: 'uint8', dims: [-1, 2, 2, 3], dimNames: ['batch'] },
      { name: 'scale', dtype: 'float32', dims: [1], dimNames: [] },
    ];
    const a = goldenInputs(specs);
    const b = goldenInputs(specs);
    expect(a.image!.dims).toEqual([1, 2, 2, 3]);
    expect(a.image!.raw.byteLength).toBe(12);
    expect(a.image!.raw.equals(b.image!.raw)).toBe(true);
    expect(new Set(a.image!.raw).size).toBeGreaterThan(3);
    const scale = a.scale!.raw.readFloatLE(0);
    expect(scale).toBeGreaterThanOrEqual(0);
    expect(scale).toBeLessThan(1);
  });

  it('differs with another seed', () => {
    const specs = [{ name: 'x', dtype: 'float32', dims: [8], dimNames: [] }];
    expect(goldenInputs(specs, 1).x!.raw.equals(goldenInputs(specs, 2).x!.raw)).toBe(false);
  });
});

describe('compareOutputs', () => {
  const tolerance = { absolute: 0.05, relative: 0.1 };

  it('passes within absolute + relative·|cpu| and names the worst element', () => {
    const verdict = compareOutputs({ y: f32(1.1, 0.04, 10.9) }, { y: f32(1, 0, 10) }, tolerance);
    expect(verdict.pass).toBe(true);
    expect(verdict.worst).toBe('y[2]');
    expect(verdict.maxError).toBeCloseTo(0.9, 5);
  });

  it('fails one element past the bound', () => {
    const verdict = compareOutputs({ y: f32(1, 0.06) }, { y: f32(1, 0) }, tolerance);
    expect(verdict.pass).toBe(false);
    expect(describeVerdict(verdict, tolerance)).toMatch(/^max error 0\.0600 at y\[1\] > 0\.05 \+ 0\.1·\|cpu\|$/);
  });

  it('fails on NaN, a missing output, or another size', () => {
    expect(compareOutputs({ y: f32(Number.NaN) }, { y: f32(0) }, tolerance).pass).toBe(false);
    expect(compareOutputs({}, { y: f32(0) }, tolerance)).toMatchObject({ pass: false, problem: 'output "y" is missing' });
    expect(compareOutputs({ y: f32(0, 0) }, { y: f32(0) }, tolerance).problem).toMatch(/2 elements, the CPU reference 1/);
  });
});

describe('RunStats', () => {
  it('keeps the median of the recent runs and counts errors apart', () => {
    const stats = new RunStats();
    expect(stats.p50Ms()).toBe(0);
    for (const ms of [5, 1, 3, 100, 2]) stats.record(ms);
    stats.recordError();
    expect(stats.p50Ms()).toBe(3);
    expect(stats.runs).toBe(5);
    expect(stats.errors).toBe(1);
    // The window follows a change: after 128 slow runs the fast ones are gone.
    for (let i = 0; i < 128; i++) stats.record(50);
    expect(stats.p50Ms()).toBe(50);
  });
});
