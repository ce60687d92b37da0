import { LOG_LEVELS, LOG_PREFIXES, SECTIONS } from '@conclave/common';
import type { LogLevel, LogPrefix, Section } from '@conclave/common';
import type { NodeInfo } from '@conclave/protocol';
import type { LogFilter } from '../logs/log-entry.js';

/** The live tail's filters as the page's form and the stream's URL carry them. */
export interface LogTailQuery {
  /** Empty: every prefix. */
  prefixes: LogPrefix[];
  /** A node id or name, as typed. */
  node?: string;
  section?: Section;
  level?: LogLevel;
  job?: string;
}

/** Longer node or job values are refused: no id or name is that long. */
const MAX_VALUE_LENGTH = 128;

/**
 * Reads `prefix` (repeated or comma-separated), `node`, `section`, `level` and `job`; empty
 * values mean no filter. Anything else is an error message for the operator.
 */
export function parseLogTailQuery(params: URLSearchParams): { query: LogTailQuery } | { error: string } {
  const prefixes = params.getAll('prefix').flatMap((p) => p.split(',')).map((p) => p.trim().toUpperCase()).filter(Boolean);
  const badPrefix = prefixes.find((p) => !(LOG_PREFIXES as readonly string[]).includes(p));
  if (badPrefix !== undefined) return { error: `prefix must be one of ${LOG_PREFIXES.join(', ')}` };
  const query: LogTailQuery = { prefixes: [...new Set(prefixes)] as LogPrefix[] };
  const section = value(params, 'section')?.toUpperCase();
  if (section !== undefined) {
    if (!(SECTIONS as readonly string[]).includes(section)) return { error: `section must be one of ${SECTIONS.join(', ')}` };
    query.section = section as Section;
  }
  const level = value(params, 'level')?.toLowerCase();
  if (level !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(level)) return { error: `level must be one of ${LOG_LEVELS.join(', ')}` };
    query.level = level as LogLevel;
  }
  for (const key of ['node', 'job'] as const) {
    const text = value(params, key);
    if (text === undefined) continue;
    if (text.length > MAX_VALUE_LENGTH) return { error: `${key} is longer than ${MAX_VALUE_LENGTH} characters` };
    query[key] = text;
  }
  return { query };
}

/** The query as URL parameters (for the stream's URL), in a fixed order. */
export function logTailSearchParams(query: LogTailQuery): URLSearchParams {
  const params = new URLSearchParams();
  if (query.prefixes.length > 0) params.set('prefix', query.prefixes.join(','));
  if (query.node !== undefined) params.set('node', query.node);
  if (query.section !== undefined) params.set('section', query.section);
  if (query.level !== undefined) params.set('level', query.level);
  if (query.job !== undefined) params.set('job', query.job);
  return params;
}

/** The store's filter; a node given by name is looked up among `nodes` (an unknown one is taken as an id). */
export function logFilterOf(query: LogTailQuery, nodes: readonly NodeInfo[]): LogFilter {
  const filter: LogFilter = {};
  if (query.prefixes.length > 0) filter.prefixes = query.prefixes;
  if (query.node !== undefined) {
    const node = query.node;
    filter.nodeId = nodes.find((n) => n.id === node)?.id ?? nodes.find((n) => n.name === node)?.id ?? node;
  }
  if (query.section !== undefined) filter.section = query.section;
  if (query.level !== undefined) filter.level = query.level;
  if (query.job !== undefined) filter.jobId = query.job;
  return filter;
}

function value(params: URLSearchParams, key: string): string | undefined {
  const text = params.get(key)?.trim();
  return text === undefined || text === '' ? undefined : text;
}
