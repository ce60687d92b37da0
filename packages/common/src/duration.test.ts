import { describe, expect, it } from 'vitest';
import { parseDurationMs } from './duration.js';

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
