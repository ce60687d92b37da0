import { ConclaveError, LOG_LEVELS, SECTIONS } from '@conclave/common';
import type { LogLevel, LogPrefix, Section } from '@conclave/common';
import type { LogQuery__Output, NodeInfo } from '@conclave/protocol';
import type { LogFilter } from './log-entry.js';
import { MAX_HISTORY, STREAM_ID_PATTERN } from './log-limits.js';

const PREFIXES: readonly LogPrefix[] = ['ORCH', 'NODE', 'CHAT', 'MODEL'];

function malformed(detail: string, data: Record<string, unknown>): ConclaveError {
  return new ConclaveError('ORCH-REQ-261', { detail, data });
}

/** `NODE-`, `node` or `NODE` → NODE; anything else is ORCH-REQ-261. */
export function parsePrefix(text: string): LogPrefix {
  const name = text.trim().replace(/-$/, '').toUpperCase();
  if (!(PREFIXES as readonly string[]).includes(name)) throw malformed(`prefix ${JSON.stringify(text)}: want one of ${PREFIXES.map((p) => `${p}-`).join(', ')}`, { prefix: text });
  return name as LogPrefix;
}

export function parseSection(text: string): Section {
  const name = text.trim().toUpperCase();
  if (!(SECTIONS as readonly string[]).includes(name)) throw malformed(`section ${JSON.stringify(text)}: want one of ${SECTIONS.join(', ')}`, { section: text });
  return name as Section;
}

export function parseLevel(text: string): LogLevel {
  const name = text.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(name)) throw malformed(`level ${JSON.stringify(text)}: want one of ${LOG_LEVELS.join(', ')}`, { level: text });
  return name as LogLevel;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: a duration back from now (`10m`, `2h`, `90s`, `1d`) or an ISO 8601 time. */
export function parseSince(text: string, nowMs: number = Date.now()): number {
  const trimmed = text.trim();
  const duration = DURATION.exec(trimmed);
  if (duration) return nowMs - Number(duration[1]) * (UNIT_MS[duration[2] ?? 's'] ?? 1000);
  // Only full dates: Date.parse alone takes "1" or "May" too.
  if (/^\d{4}-\d{2}-\d{2}/.test(trimmed)) {
    const ms = Date.parse(trimmed);
    if (!Number.isNaN(ms)) return ms;
  }
  throw malformed(`since ${JSON.stringify(text)}: want a duration (10m, 2h, 90s, 1d) or an ISO time (2026-12-01T10:00:00Z)`, { since: text });
}

/** Node id or name → id, among every node that ever registered; ORCH-REQ-260 for neither. */
export function resolveNode(idOrName: string, nodes: readonly NodeInfo[]): string {
  const byId = nodes.find((node) => node.id === idOrName);
  if (byId?.id) return byId.id;
  const named = nodes.filter((node) => node.name === idOrName);
  // A name two boards share: the connected one, else the one seen last.
  const chosen = named.find((node) => node.state === 'connected') ?? [...named].sort((a, b) => Number(b.lastSeenMs ?? 0) - Number(a.lastSeenMs ?? 0))[0];
  if (chosen?.id) return chosen.id;
  throw new ConclaveError('ORCH-REQ-260', { detail: JSON.stringify(idOrName), data: { node: idOrName } });
}

/** A TailLogs request as a store filter; the node is resolved by the caller (it needs the registry). */
export function filterOfQuery(query: LogQuery__Output, nodeId: string | undefined): LogFilter {
  const filter: LogFilter = {};
  if (query.prefixes.length > 0) filter.prefixes = query.prefixes.map(parsePrefix);
  if (nodeId !== undefined) filter.nodeId = nodeId;
  if (query.section) filter.section = parseSection(query.section);
  if (query.level) filter.level = parseLevel(query.level);
  if (query.jobId) filter.jobId = query.jobId;
  const sinceMs = Number(query.sinceMs);
  if (sinceMs < 0) throw malformed(`since_ms ${sinceMs} is negative`, { sinceMs });
  if (sinceMs > 0) filter.sinceMs = sinceMs;
  if (query.afterId) {
    if (!STREAM_ID_PATTERN.test(query.afterId)) throw malformed(`after_id ${JSON.stringify(query.afterId)}: want an entry id (<ms>-<n>)`, { afterId: query.afterId });
    filter.afterId = query.afterId;
  }
  if (query.limit > MAX_HISTORY) throw malformed(`limit ${query.limit} is over ${MAX_HISTORY}`, { limit: query.limit });
  if (query.limit > 0) filter.limit = query.limit;
  return filter;
}
