/** How a column's cells line up; numbers read best right-aligned. */
export type Align = 'left' | 'right';

export interface Column {
  readonly header: string;
  readonly align?: Align;
}

/** Two spaces between columns: compact, and still unambiguous for `awk`. */
const COLUMN_GAP = '  ';

/**
 * A compact table: an upper-case header row, then one line per row, columns
 * padded to their widest cell. Trailing spaces are trimmed.
 */
export function formatTable(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = columns.map((column, i) =>
    Math.max(column.header.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  const render = (cells: readonly string[]): string =>
    columns
      .map((column, i) => {
        const cell = cells[i] ?? '';
        const width = widths[i] ?? 0;
        return column.align === 'right' ? cell.padStart(width) : cell.padEnd(width);
      })
      .join(COLUMN_GAP)
      .trimEnd();
  return [render(columns.map((c) => c.header.toUpperCase())), ...rows.map(render)].join('\n') + '\n';
}

/** `key: value` lines with the values aligned. */
export function formatKeyValues(pairs: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(0, ...pairs.map(([key]) => key.length + 1));
  return pairs.map(([key, value]) => `${`${key}:`.padEnd(width)} ${value}`.trimEnd()).join('\n') + '\n';
}

/** Pretty JSON with a final newline; bigints (64-bit tensor data) become strings. */
export function formatJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/** `1.5 MiB`; exact bytes below 1 KiB. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** An epoch-millisecond time as ISO-8601, or `-` for 0 (proto3's "not set"). */
export function formatTime(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : '-';
}

/** How long ago, coarsely (`850ms`, `12s`, `5m`, `3h`, `2d`), or `-` for 0. */
export function formatAge(ms: number, now: number): string {
  if (ms <= 0) return '-';
  const elapsed = Math.max(0, now - ms);
  if (elapsed < 1_000) return `${elapsed}ms`;
  if (elapsed < 60_000) return `${Math.floor(elapsed / 1_000)}s`;
  if (elapsed < 3_600_000) return `${Math.floor(elapsed / 60_000)}m`;
  if (elapsed < 86_400_000) return `${Math.floor(elapsed / 3_600_000)}h`;
  return `${Math.floor(elapsed / 86_400_000)}d`;
}

/** A list as `a,b,c`, or `-` when empty, so table cells are never blank. */
export function formatList(items: readonly string[]): string {
  return items.length > 0 ? items.join(',') : '-';
}

/** `-` for an empty string, so table cells are never blank. */
export function orDash(value: string): string {
  return value === '' ? '-' : value;
}
