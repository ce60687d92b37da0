import { once } from 'node:events';
import { chmodSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import winston from 'winston';
import DailyRotateFile from 'winston-daily-rotate-file';
import { isConclaveError } from './errors/conclave-error.js';
import { formatConsoleLine, formatJsonLine, redact, type LogRecord } from './log-format.js';
import type { LogTap } from './log-tap.js';
import { SECTIONS, type LogLevel, type LogMeta, type LogPrefix, type Logger, type Section } from './logger.js';

export interface LogFileOptions {
  /** Directory for rotated JSON-lines files; created if missing. */
  dir: string;
  /** Rotate when a file reaches this size. @default '20m' */
  maxSize?: string;
  /** Keep this many files or days. @default '14d' */
  maxFiles?: string;
  /** File name stem; the date is appended. @default the prefix in lower case */
  name?: string;
}

export interface LoggerOptions {
  prefix: LogPrefix;
  /** @default 'info' */
  level?: LogLevel;
  /** Meta on every line; NODE loggers always carry `{ node: id }`. */
  bindings?: LogMeta;
  /** Human lines: true for stderr, a stream, or false for none. @default true */
  console?: boolean | NodeJS.WritableStream;
  /** Rotated JSON-lines files (winston-daily-rotate-file). @default none */
  file?: LogFileOptions;
  /** Receives each human line synchronously (tests, log shipping). */
  sink?: (line: string) => void;
  /** Clock for line times; tests pin it. @default () => new Date() */
  now?: () => Date;
  /**
   * Every record at or above the tap's own level, whatever `level` is: log shipping (node
   * agents) and the fleet log store (orchestrator) read records here.
   */
  tap?: LogTap;
}

/** A logger that owns transports: `close()` flushes and closes files. */
export interface ClosableLogger extends Logger {
  close(): Promise<void>;
}

export const DEFAULT_LOG_LEVEL: LogLevel = 'info';
export const DEFAULT_LOG_FILE_MAX_SIZE = '20m';
export const DEFAULT_LOG_FILE_MAX_FILES = '14d';

const LEVEL_RANK: Readonly<Record<LogLevel, number>> = { error: 0, warn: 1, info: 2, debug: 3 };

/** Message of a line logged by `failure()` for something that is not a ConclaveError. */
export const UNEXPECTED_ERROR_MESSAGE = 'unexpected error';

type Emit = (record: LogRecord) => void;

/**
 * The Logger behind both createLogger and captureLogger: builds redacted
 * records and hands them to `emit`, so every output shares one formatter.
 */
class RecordLogger implements Logger {
  constructor(
    private readonly prefix: LogPrefix,
    private readonly bindings: LogMeta,
    private readonly threshold: number,
    private readonly now: () => Date,
    private readonly emit: Emit,
  ) {}

  error(section: Section, message: string, meta?: LogMeta): void {
    this.log('error', section, message, meta);
  }

  warn(section: Section, message: string, meta?: LogMeta): void {
    this.log('warn', section, message, meta);
  }

  info(section: Section, message: string, meta?: LogMeta): void {
    this.log('info', section, message, meta);
  }

  debug(section: Section, message: string, meta?: LogMeta): void {
    this.log('debug', section, message, meta);
  }

  failure(err: unknown, meta: LogMeta = {}, level: 'error' | 'warn' = 'error'): void {
    if (isConclaveError(err)) {
      this.log(level, err.entry.section, err.entry.message, { ...err.data, ...meta, err }, err.code);
      return;
    }
    const { section, ...rest } = meta;
    const lineSection = isSection(section) ? section : 'STATE';
    this.log(level, lineSection, UNEXPECTED_ERROR_MESSAGE, { ...rest, err });
  }

  child(bindings: LogMeta): Logger {
    return new RecordLogger(this.prefix, { ...this.bindings, ...bindings }, this.threshold, this.now, this.emit);
  }

  withPrefix(prefix: LogPrefix): Logger {
    return new RecordLogger(prefix, this.bindings, this.threshold, this.now, this.emit);
  }

  private log(level: LogLevel, section: Section, message: string, meta: LogMeta = {}, failureCode?: string): void {
    if (LEVEL_RANK[level] > this.threshold) return;
    const { code, ...rest } = { ...this.bindings, ...meta };
    const err = rest.err;
    const lineCode =
      failureCode ?? (typeof code === 'string' ? code : isConclaveError(err) ? err.code : undefined);
    const record: LogRecord = {
      time: this.now(),
      level,
      prefix: this.prefix,
      section,
      message: String(redact(message)),
      meta: redact(rest) as LogMeta,
    };
    if (lineCode !== undefined) record.code = lineCode;
    // A code that is not a string (rare) still appears, as data.
    if (code !== undefined && typeof code !== 'string') record.meta.code = redact(code);
    try {
      this.emit(record);
    } catch {
      // Logging never throws into the caller: a broken sink must not take down a request.
    }
  }
}

function isSection(x: unknown): x is Section {
  return typeof x === 'string' && (SECTIONS as readonly string[]).includes(x);
}

const MESSAGE = Symbol.for('message');
const RECORD = Symbol('record');

type WinstonInfo = winston.Logform.TransformableInfo & { [RECORD]?: LogRecord; [MESSAGE]?: string };

function renderWith(render: (record: LogRecord) => string): winston.Logform.Format {
  return winston.format((info: WinstonInfo) => {
    const record = info[RECORD];
    if (record) info[MESSAGE] = render(record);
    return info;
  })();
}

/**
 * Creates a Logger over winston. Human lines go to stderr (or `console`),
 * JSON lines to rotated files under `file.dir`, and each human line to `sink`.
 */
export function createLogger(options: LoggerOptions): ClosableLogger {
  const level = options.level ?? DEFAULT_LOG_LEVEL;
  const now = options.now ?? (() => new Date());
  const transports: winston.transport[] = [];
  const consoleOption = options.console ?? true;
  if (consoleOption !== false) {
    const stream = consoleOption === true ? process.stderr : consoleOption;
    transports.push(new winston.transports.Stream({ stream, format: renderWith(formatConsoleLine) }));
  }
  if (options.file) {
    restrictLogDir(options.file.dir);
    transports.push(
      new DailyRotateFile({
        dirname: options.file.dir,
        filename: `${options.file.name ?? options.prefix.toLowerCase()}-%DATE%.log`,
        datePattern: 'YYYY-MM-DD',
        utc: true,
        maxSize: options.file.maxSize ?? DEFAULT_LOG_FILE_MAX_SIZE,
        maxFiles: options.file.maxFiles ?? DEFAULT_LOG_FILE_MAX_FILES,
        format: renderWith(formatJsonLine),
        // Passed to fs.createWriteStream for every file, the rotated ones too.
        options: { flags: 'a', mode: LOG_FILE_MODE },
      }),
    );
    // Again for the rotator's audit file, which it writes with the default mode.
    restrictLogDir(options.file.dir);
  }
  const winstonLogger =
    transports.length > 0
      ? winston.createLogger({ levels: LEVEL_RANK, level, transports, exitOnError: false })
      : undefined;
  const sink = options.sink;
  const tap = options.tap;
  const outputRank = LEVEL_RANK[level];
  const emit: Emit = (record) => {
    const rank = LEVEL_RANK[record.level];
    if (tap && rank <= LEVEL_RANK[tap.level]) tap.write(record);
    // The tap may want more than the outputs: the records below their level stop here.
    if (rank > outputRank) return;
    if (sink) sink(formatConsoleLine(record));
    winstonLogger?.log({ level: record.level, message: record.message, [RECORD]: record });
  };
  // Records are built down to the lower of the two levels; each output filters its own.
  const threshold = tap ? Math.max(outputRank, LEVEL_RANK[tap.level]) : outputRank;
  const logger = new RecordLogger(options.prefix, options.bindings ?? {}, threshold, now, emit);
  let closed: Promise<void> | undefined;
  return Object.assign(logger, {
    close(): Promise<void> {
      closed ??= closeWinston(winstonLogger);
      return closed;
    },
  });
}

/** Log lines name nodes, jobs, addresses and errors: for this user only. */
const LOG_DIR_MODE = 0o700;
const LOG_FILE_MODE = 0o600;

/**
 * Creates the log dir with LOG_DIR_MODE, and tightens one that exists (and the files in it) to
 * these modes: logs written before this rule was kept were 0644 in a 0755 dir. Synchronous, like
 * the rotator's own setup: it runs once, when the logger is made.
 */
function restrictLogDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: LOG_DIR_MODE });
  chmodIfOwned(dir, LOG_DIR_MODE);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isFile()) chmodIfOwned(join(dir, entry.name), LOG_FILE_MODE);
  }
}

/** chmod, except on what another user owns (EPERM): that is theirs to fix, and no reason not to log. */
function chmodIfOwned(path: string, mode: number): void {
  try {
    chmodSync(path, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  }
}

async function closeWinston(logger: winston.Logger | undefined): Promise<void> {
  if (!logger) return;
  // The rotate-file transport writes to an fs stream of its own (`logStream`, not in its types);
  // its 'close' is the only sign that every line reached the file.
  const fileStreams = logger.transports
    .filter((t) => t instanceof DailyRotateFile)
    .map((t) => (t as unknown as { logStream?: NodeJS.EventEmitter }).logStream)
    .filter((s): s is NodeJS.EventEmitter => s !== undefined);
  const filesClosed = Promise.all(fileStreams.map((s) => once(s, 'close')));
  const drained = once(logger, 'finish');
  logger.end();
  await drained;
  // Unpiping calls each transport's close(), which ends its file stream.
  logger.close();
  const timeout = new Promise<void>((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref());
  await Promise.race([filesClosed, timeout]);
}

/** Longest close() waits for files to flush; a stuck disk must not hang shutdown. */
const CLOSE_TIMEOUT_MS = 2_000;

export interface CapturedLogger {
  logger: Logger;
  /** Every human line, in order, exactly as the console would print it. */
  lines: string[];
  /** JSON file lines for the same records. */
  jsonLines: string[];
}

/** A debug-level logger that keeps its lines in memory, for tests across the repo. */
export function captureLogger(prefix: LogPrefix, bindings: LogMeta = {}): CapturedLogger {
  const lines: string[] = [];
  const jsonLines: string[] = [];
  const emit: Emit = (record) => {
    lines.push(formatConsoleLine(record));
    jsonLines.push(formatJsonLine(record));
  };
  return { logger: new RecordLogger(prefix, bindings, LEVEL_RANK.debug, () => new Date(), emit), lines, jsonLines };
}

/** A logger that drops everything. */
export const nullLogger: Logger = {
  error: () => {},
  warn: () => {},
  info: () => {},
  debug: () => {},
  failure: () => {},
  child: () => nullLogger,
  withPrefix: () => nullLogger,
};
