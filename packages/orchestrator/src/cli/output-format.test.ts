import { describe, expect, it } from 'vitest';
import { formatAge, formatBytes, formatJson, formatKeyValues, formatTable, formatTime } from './output-format.js';

describe('formatTable', () => {
  it('aligns columns under upper-case headers and trims trailing space', () => {
    const text = formatTable(
      [{ header: 'name' }, { header: 'slots', align: 'right' }, { header: 'state' }],
      [
        ['pi-01', '1/4', 'connected'],
        ['a-much-longer-name', '12/16', 'suspect'],
      ],
    );
    expect(text).toBe(
      [
        'NAME                SLOTS  STATE',
        'pi-01                 1/4  connected',
        'a-much-longer-name  12/16  suspect',
        '',
      ].join('\n'),
    );
  });

  it('prints only the header for no rows', () => {
    expect(formatTable([{ header: 'id' }], [])).toBe('ID\n');
  });
});

describe('formatKeyValues', () => {
  it('aligns the values', () => {
    expect(formatKeyValues([['id', 'j1'], ['state', 'completed']])).toBe('id:    j1\nstate: completed\n');
  });
});

describe('formatJson', () => {
  it('pretty-prints with a final newline and writes bigints as strings', () => {
    expect(formatJson({ a: 1n << 60n })).toBe('{\n  "a": "1152921504606846976"\n}\n');
  });
});

describe('small formatters', () => {
  it('formats bytes, times and ages', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(3 * 1024 * 1024)).toBe('3.0 MiB');
    expect(formatTime(0)).toBe('-');
    expect(formatTime(Date.UTC(2025, 0, 2, 3, 4, 5))).toBe('2025-01-02T03:04:05.000Z');
    expect(formatAge(0, 10_000)).toBe('-');
    expect(formatAge(9_500, 10_000)).toBe('500ms');
    expect(formatAge(1_000, 13_000)).toBe('12s');
    expect(formatAge(1_000, 1_000 + 5 * 60_000)).toBe('5m');
  });
});
