import { EXIT_OK, formatConsoleLine } from '@conclave/common';
import type { LogLevel, LogPrefix, Section } from '@conclave/common';
import type { LogEntries__Output, LogEntry__Output, LogQuery } from '@conclave/protocol';
import { DEFAULT_HISTORY } from '../logs/log-limits.js';
import { parseLevel, parsePrefix, parseSection, parseSince } from '../logs/log-query.js';
import type { CliIo } from './cli-io.js';
import type { ControlCalls } from './control-calls.js';
import { followAgain } from './follow-again.js';

export interface LogsOptions {
  follow?: boolean;
  /** `NODE-`, `ORCH`…; several are ORed. */
  prefixes?: readonly string[];
  node?: string;
  section?: string;
  level?: string;
  job?: string;
  /** A duration back from now (`10m`) or an ISO time. */
  since?: string;
  /** History: the newest N (default 200, 20 with -f), or with --since the first N from then. */
  limit?: number;
  json?: boolean;
  /** Resolves when the operator asks to stop (SIGINT, SIGTERM): the follow ends, exit 0. */
  interrupted?: Promise<unknown>;
  now?: () => number;
}

/** The query the flags make; bad flags fail here, before any call (ORCH-REQ-261). */
export function logQueryOf(options: LogsOptions): LogQuery {
  const query: LogQuery = { follow: options.follow ?? false };
  if (options.prefixes && options.prefixes.length > 0) query.prefixes = options.prefixes.map(parsePrefix);
  if (options.node) query.node = options.node;
  if (options.section) query.section = parseSection(options.section);
  if (options.level) query.level = parseLevel(options.level);
  if (options.job) query.jobId = options.job;
  if (options.since) query.sinceMs = parseSince(options.since, (options.now ?? Date.now)());
  if (options.limit !== undefined) query.limit = options.limit;
  return query;
}

/** The record's own fields first, then its other fields, which never shadow them. */
const FIXED_KEYS = new Set(['id', 'time', 'level', 'prefix', 'section', 'code', 'message', 'node', 'nodeName', 'jobId', 'gap']);

function fieldsOf(entry: LogEntry__Output): Record<string, unknown> {
  if (!entry.fieldsJson) return {};
  try {
    const parsed: unknown = JSON.parse(entry.fieldsJson);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { fields: parsed };
  } catch {
    return { fields: entry.fieldsJson };
  }
}

/** `--json`: one object a line (docs/operations.md, "Fleet logs"). */
export function logEntryJson(entry: LogEntry__Output): Record<string, unknown> {
  const out: Record<string, unknown> = {
    time: new Date(Number(entry.timeMs)).toISOString(), level: entry.level, prefix: entry.prefix, section: entry.section,
  };
  if (entry.code) out.code = entry.code;
  out.message = entry.message;
  if (entry.node) out.node = entry.node;
  if (entry.nodeName) out.nodeName = entry.nodeName;
  if (entry.jobId) out.jobId = entry.jobId;
  for (const [key, value] of Object.entries(fieldsOf(entry))) out[FIXED_KEYS.has(key) ? `meta_${key}` : key] = value;
  if (entry.gap) out.gap = true;
  out.id = entry.id;
  return out;
}

/**
 * A human line, as the process that wrote it printed it (docs/operations.md), with the node's
 * name where a node shipped it: `<time> <LEVEL> NODE-LOAD-104 <message> node=board-7 jobId=… …`.
 */
export function formatLogEntry(entry: LogEntry__Output): string {
  const meta: Record<string, unknown> = {};
  if (entry.node) meta.node = entry.nodeName || entry.node;
  if (entry.jobId) meta.jobId = entry.jobId;
  Object.assign(meta, fieldsOf(entry));
  if (entry.gap) meta.gap = true;
  return formatConsoleLine({
    time: new Date(Number(entry.timeMs)), level: entry.level as LogLevel, prefix: entry.prefix as LogPrefix, section: entry.section as Section,
    ...(entry.code ? { code: entry.code } : {}), message: entry.message, meta,
  });
}

/**
 * `orchestrator logs`: the fleet log store's records that match, oldest first; with `-f` the new
 * ones as they come, resuming after the last one printed when the orchestrator restarts (no line
 * twice, none skipped); with `--job ID -f` until the job has ended.
 */
export async function logsCommand(calls: ControlCalls, io: CliIo, options: LogsOptions): Promise<number> {
  const query = logQueryOf(options);
  const follow = query.follow ?? false;
  let lastId = '';
  let printed = 0;
  let jobEnded = false;
  const onEntries = (message: LogEntries__Output): void => {
    for (const entry of message.entries) {
      io.stdout.write(`${options.json ? JSON.stringify(logEntryJson(entry)) : formatLogEntry(entry)}\n`);
      lastId = entry.id;
      printed += 1;
    }
    if (message.jobEnded) jobEnded = true;
  };
  await followAgain({
    follow, io, ...(options.interrupted ? { interrupted: options.interrupted } : {}),
    // A resumed follow reads from its last entry on: no history limit, no since.
    open: () => calls.tailLogs(lastId ? { ...query, afterId: lastId, sinceMs: 0, limit: 0 } : query, onEntries),
    resumeAt: () => (lastId ? `after ${lastId}` : 'from the start'),
  });
  if (jobEnded) io.stderr.write(`job ${query.jobId ?? ''} has ended\n`);
  const limit = query.limit || DEFAULT_HISTORY;
  if (!follow && printed >= limit) {
    const which = query.sinceMs ? `the first ${limit} from --since` : `the newest ${limit}`;
    io.stderr.write(`${printed} records shown (${which}; --limit N for more); there may be more\n`);
  }
  return EXIT_OK;
}
