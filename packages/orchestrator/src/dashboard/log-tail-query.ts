import { ConclaveError, isConclaveError } from '@conclave/common';
import type { LogLevel, LogPrefix, Section } from '@conclave/common';
import type { NodeInfo } from '@conclave/protocol';
import type { LogFilter } from '../logs/log-entry.js';
import { parseLevel, parsePrefix, parseSection, resolveNode } from '../logs/log-query.js';

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

/** The parameters the tail reads; the others are no filter of it. */
const LOG_TAIL_KEYS = ['prefix', 'node', 'section', 'level', 'job'] as const;

/** Longer node or job values are refused: no id or name is that long. */
const MAX_VALUE_LENGTH = 128;

/**
 * Reads `prefix` (repeated or comma-separated), `node`, `section`, `level` and `job` as
 * `orchestrator logs` reads its flags (log-query.ts); empty values mean no filter. A value
 * outside its set, or too long, is ORCH-REQ-261, for the tail's panel to show.
 */
export function parseLogTailQuery(params: URLSearchParams): { query: LogTailQuery } | { error: ConclaveError } {
  try {
    return { query: readQuery(params) };
  } catch (err) {
    if (isConclaveError(err)) return { error: err };
    throw err;
  }
}

function readQuery(params: URLSearchParams): LogTailQuery {
  const prefixes = params.getAll('prefix').flatMap((p) => p.split(',')).filter((p) => p.trim() !== '').map(parsePrefix);
  const query: LogTailQuery = { prefixes: [...new Set(prefixes)] };
  const section = value(params, 'section');
  if (section !== undefined) query.section = parseSection(section);
  const level = value(params, 'level');
  if (level !== undefined) query.level = parseLevel(level);
  for (const key of ['node', 'job'] as const) {
    const text = value(params, key);
    if (text === undefined) continue;
    if (text.length > MAX_VALUE_LENGTH) {
      throw new ConclaveError('ORCH-REQ-261', { detail: `${key} is longer than ${MAX_VALUE_LENGTH} characters`, data: { key, length: text.length } });
    }
    query[key] = text;
  }
  return query;
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

/**
 * The tail's parameters as they were given, the others dropped: the stream's URL for a page
 * whose query was refused, so that its stream shows the same refusal instead of an unfiltered tail.
 */
export function logTailParamsAsGiven(params: URLSearchParams): URLSearchParams {
  return new URLSearchParams([...params].filter(([key]) => (LOG_TAIL_KEYS as readonly string[]).includes(key)));
}

/**
 * The store's filter. A node is resolved among `nodes` as `orchestrator logs` resolves it
 * (an id, else the connected one of that name, else the one seen last); neither is ORCH-REQ-260.
 */
export function logFilterOf(query: LogTailQuery, nodes: readonly NodeInfo[]): LogFilter {
  const filter: LogFilter = {};
  if (query.prefixes.length > 0) filter.prefixes = query.prefixes;
  if (query.node !== undefined) filter.nodeId = resolveNode(query.node, nodes);
  if (query.section !== undefined) filter.section = query.section;
  if (query.level !== undefined) filter.level = query.level;
  if (query.job !== undefined) filter.jobId = query.job;
  return filter;
}

function value(params: URLSearchParams, key: string): string | undefined {
  const text = params.get(key)?.trim();
  return text === undefined || text === '' ? undefined : text;
}
