/** A proto int64 as the registry gives it (a number; a Long or string from the wire). */
export function num(value: number | string | { toString(): string } | null | undefined): number {
  if (value === undefined || value === null) return 0;
  return typeof value === 'number' ? value : Number(value.toString());
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${BYTE_UNITS[unit]}`;
}

/** `HH:MM:SS` in UTC, as the log files' times are. */
export function formatClock(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString().slice(11, 19) : '–';
}

/** `HH:MM:SS.mmm` in UTC. */
export function formatClockMs(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString().slice(11, 23) : '–';
}

/** `850 ms`, `4.2 s`, `3 min`, `5 h`. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 3_600_000)} h`;
}

/** How long ago, whole seconds under a minute: a 1 Hz heartbeat reads as 0–1 s. */
export function formatAge(thenMs: number, nowMs: number): string {
  if (thenMs <= 0) return 'never';
  const ms = Math.max(0, nowMs - thenMs);
  return ms < 60_000 ? `${Math.floor(ms / 1_000)} s ago` : `${formatDuration(ms)} ago`;
}

/** At most `max` characters, with an ellipsis when cut. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
