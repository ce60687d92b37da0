/** Which part of the system wrote a line: the first word of every log line. */
export type LogPrefix = 'ORCH' | 'NODE' | 'CHAT' | 'MODEL';

/**
 * The sections of DESIGN.md. AUTH..HEALTH come from the original server's plan;
 * NET, SCHED, STATE and JOB are Conclave's own.
 */
export const SECTIONS = [
  'AUTH', 'LOAD', 'MEM', 'REQ', 'RESP', 'CLEAN', 'HEALTH', 'NET', 'SCHED', 'STATE', 'JOB',
] as const;
export type Section = (typeof SECTIONS)[number];

/** The levels, most severe first: a level lets through itself and those before it. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** True when a record at `level` passes a `threshold` (`warn` passes `info`, not the reverse). */
export function levelPasses(level: LogLevel, threshold: LogLevel): boolean {
  return LOG_LEVELS.indexOf(level) <= LOG_LEVELS.indexOf(threshold);
}

/** Structured data for a line. `err` may hold an Error; `code` a catalog code. */
export type LogMeta = Record<string, unknown>;

/**
 * The only logging surface the code sees; winston lives in the adapter.
 * Messages are constant strings, data goes in `meta`.
 */
export interface Logger {
  error(section: Section, message: string, meta?: LogMeta): void;
  warn(section: Section, message: string, meta?: LogMeta): void;
  info(section: Section, message: string, meta?: LogMeta): void;
  debug(section: Section, message: string, meta?: LogMeta): void;
  /**
   * Logs a failure under its catalog code: a ConclaveError logs at its own
   * section and code (`NODE-LOAD-104`); anything else logs as given.
   */
  failure(err: unknown, meta?: LogMeta, level?: 'error' | 'warn'): void;
  /** A logger whose lines all carry `bindings` (e.g. `{ jobId }`). */
  child(bindings: LogMeta): Logger;
  /**
   * The same outputs, bindings and level under another prefix: the orchestrator's and the
   * agents' chat components write `CHAT-` lines beside their own.
   */
  withPrefix(prefix: LogPrefix): Logger;
}
