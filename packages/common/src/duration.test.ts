import { describe, expect, it } from 'vitest';
import { formatDurationMs, parseDurationMs } from './duration.js';

describe('parseDurationMs', () => {
  it('reads one or more groups of an integer and a unit', () => {
    expect(parseDurationMs('500ms')).toBe(500);
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('2m')).toBe(120_000);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs(' 1d ')).toBe(86_400_000);
  });

  it('refuses a bare number, a fraction, a negative or an unknown unit', () => {
    for (const text of ['30', '1.5s', '-1s', '3w', '', 's']) expect(parseDurationMs(text)).toBeUndefined();
  });
});

describe('formatDurationMs', () => {
  it('writes the largest units that add up exactly, and reads back as the same duration', () => {
    expect(formatDurationMs(3_600_000)).toBe('1h');
    expect(formatDurationMs(5_400_000)).toBe('1h30m');
    expect(formatDurationMs(1_500)).toBe('1s500ms');
    expect(formatDurationMs(0)).toBe('0s');
    for (const ms of [1, 999, 61_000, 90_061_001]) expect(parseDurationMs(formatDurationMs(ms))).toBe(ms);
  });
});
