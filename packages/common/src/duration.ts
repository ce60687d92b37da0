const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** One or more `<integer><unit>` groups, units ms, s, m, h, d: `500ms`, `30s`, `2m`, `1h30m`. */
export const DURATION_PATTERN = /^(?:\d+(?:ms|s|m|h|d))+$/;

const GROUP = /(\d+)(ms|s|m|h|d)/g;

/** `30s` → 30 000; undefined for anything else (a bare number has no unit, so it is refused). */
export function parseDurationMs(text: string): number | undefined {
  const trimmed = text.trim();
  if (!DURATION_PATTERN.test(trimmed)) return undefined;
  let total = 0;
  for (const [, amount, unit] of trimmed.matchAll(GROUP)) total += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  return Number.isSafeInteger(total) ? total : undefined;
}

/** 3 600 000 → `1h`, 5 400 000 → `1h30m`: the largest units that add up exactly. */
export function formatDurationMs(ms: number): string {
  if (ms <= 0) return '0s';
  let rest = ms;
  let text = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms'] as const) {
    const size = UNIT_MS[unit];
    if (rest >= size) {
      text += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return text;
}
