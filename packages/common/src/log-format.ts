import { isErrorCode, parseErrorCode } from './errors/catalog/index.js';
import { isConclaveError } from './errors/conclave-error.js';
import type { LogLevel, LogMeta, LogPrefix, Section } from './logger.js';

/** One log line before rendering; `meta` is already redacted. */
export interface LogRecord {
  time: Date;
  level: LogLevel;
  prefix: LogPrefix;
  section: Section;
  /** A catalog code (or an error's own code) for this line, if any. */
  code?: string;
  message: string;
  meta: LogMeta;
}

/** Meta keys whose values are never printed. */
export const SECRET_KEY_PATTERN = /pass(word)?|secret|token|authorization|api[-_]?key|private[-_]?key|cookie|credential/i;

/**
 * Keys that match SECRET_KEY_PATTERN only because they speak of model tokens or
 * fencing tokens; their values are counts or names, so printing them is safe
 * when the value is a number (`maxTokens`, `tokensPerSecond`, `fencingToken`).
 */
const COUNT_KEY_PATTERN = /tokens|fencing/i;
const TOKENIZER_KEY_PATTERN = /tokenizer/i;

export const REDACTED = '[REDACTED]';

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/[^\s:@/]*):([^\s@/]+)@/gi;

/** Masks the password part of every URL in a string: `redis://:pw@host` → `redis://:***@host`. */
export function maskUrlCredentials(text: string): string {
  return text.replace(URL_CREDENTIALS, '$1:***@');
}

export function isSecretKey(key: string, value?: unknown): boolean {
  if (!SECRET_KEY_PATTERN.test(key)) return false;
  if (TOKENIZER_KEY_PATTERN.test(key)) return false;
  if (typeof value === 'number' && COUNT_KEY_PATTERN.test(key)) return false;
  return true;
}

/** A plain view of an error for logs: name, message, code, stack; never its enumerable extras. */
export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  detail?: string;
  stack?: string;
  cause?: SerializedError | string;
}

/**
 * Returns a deep copy of `value` with secret keys replaced by REDACTED and URL
 * credentials masked in every string. Errors become SerializedError; cycles
 * become "[Circular]"; byte arrays print their length only.
 */
export function redact(value: unknown, key?: string, seen: WeakSet<object> = new WeakSet()): unknown {
  if (key !== undefined && isSecretKey(key, value)) return REDACTED;
  if (typeof value === 'string') return maskUrlCredentials(value);
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') {
    return typeof value === 'function' || typeof value === 'symbol' ? String(value) : value;
  }
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (ArrayBuffer.isView(value)) return `[${value.constructor.name} ${value.byteLength} bytes]`;
  if (value instanceof URL) return maskUrlCredentials(value.href);
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  try {
    if (value instanceof Error) return serializeError(value, seen);
    if (Array.isArray(value)) return value.map((item) => redact(item, undefined, seen));
    if (value instanceof Map) return redact(Object.fromEntries(value), undefined, seen);
    if (value instanceof Set) return redact([...value], undefined, seen);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) out[k] = redact(v, k, seen);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

function serializeError(err: Error, seen: WeakSet<object>): SerializedError {
  const out: SerializedError = { name: err.name, message: maskUrlCredentials(err.message) };
  const code = errorCodeOf(err);
  if (code !== undefined) out.code = code;
  if (isConclaveError(err) && err.detail !== undefined) out.detail = maskUrlCredentials(err.detail);
  if (err.stack) out.stack = maskUrlCredentials(err.stack);
  if (err.cause !== undefined) {
    const cause = redact(err.cause, undefined, seen);
    out.cause = isSerializedError(cause) ? cause : typeof cause === 'string' ? cause : JSON.stringify(cause);
  }
  return out;
}

function isSerializedError(x: unknown): x is SerializedError {
  return typeof x === 'object' && x !== null && 'name' in x && 'message' in x;
}

/** The catalog code of a ConclaveError, or a Node system error's string code (`ECONNREFUSED`). */
export function errorCodeOf(err: unknown): string | undefined {
  if (isConclaveError(err)) return err.code;
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/**
 * The `<PREFIX>-<SECTION>[-<number>]` tag. The number shows only when the
 * code is a catalog code of this prefix and section, so a tag never lies
 * about where a line came from; any other code is printed as `code=`.
 */
export function lineTag(prefix: LogPrefix, section: Section, code?: string): string {
  const tagNumber = tagNumberOf(prefix, section, code);
  return tagNumber === undefined ? `${prefix}-${section}` : `${prefix}-${section}-${tagNumber}`;
}

function tagNumberOf(prefix: LogPrefix, section: Section, code?: string): number | undefined {
  if (code === undefined || !isErrorCode(code)) return undefined;
  const parts = parseErrorCode(code);
  return parts && parts.prefix === prefix && parts.section === section ? parts.number : undefined;
}

function causeMessage(cause: SerializedError | string): string {
  return typeof cause === 'string' ? cause : cause.message;
}

/**
 * What a terminal may act on, or a log viewer break a line at: C0 controls (ESC starts every
 * escape sequence), DEL, C1 controls (U+009B is a one-character CSI), the bidi embeddings,
 * overrides and isolates (U+202A–U+202E, U+2066–U+2069, which reorder what follows), and the line
 * and paragraph separators. Node-controlled strings reach the console, so none passes raw.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const TERMINAL_CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `\uXXXX` for each TERMINAL_CONTROLS character: the JSON escape, valid inside a JSON string too. */
function escapeControls(text: string): string {
  return text.replace(TERMINAL_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Printed as is: no whitespace, quote, `=`, backslash or control character (those are quoted and escaped). */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const BARE_VALUE = /^[^\s"=\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]+$/;

function renderValue(value: unknown): string {
  if (isSerializedError(value)) return JSON.stringify(value.message);
  if (typeof value === 'string') return BARE_VALUE.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  return JSON.stringify(value) ?? String(value);
}

/**
 * Human line: `<ISO time> <LEVEL> <PREFIX>-<SECTION>[-<n>] <message> key=value…`.
 * `err` renders as `err="<message>"` followed by `code=` when the error has one.
 */
export function formatConsoleLine(record: LogRecord): string {
  const tag = lineTag(record.prefix, record.section, record.code);
  const parts = [record.time.toISOString(), record.level.toUpperCase().padEnd(5), tag, record.message];
  let codePrinted = tagNumberOf(record.prefix, record.section, record.code) !== undefined;
  for (const [key, value] of Object.entries(record.meta)) {
    if (value === undefined) continue;
    if (key === 'err' && isSerializedError(value)) {
      if (value.code !== undefined && value.code === record.code && value.message.startsWith(record.message)) {
        // The line is this error (failure()): its message is already the line's message.
        if (value.detail !== undefined) parts.push(`detail=${JSON.stringify(value.detail)}`);
        if (value.cause !== undefined) parts.push(`cause=${JSON.stringify(causeMessage(value.cause))}`);
        if (!codePrinted) {
          parts.push(`code=${value.code}`);
          codePrinted = true;
        }
        continue;
      }
      parts.push(`err=${JSON.stringify(value.message)}`);
      const errCode = value.code ?? record.code;
      if (errCode !== undefined && !codePrinted) {
        parts.push(`code=${errCode}`);
        codePrinted = true;
      }
      continue;
    }
    if (key === 'code') {
      if (codePrinted) continue;
      codePrinted = true;
    }
    parts.push(`${key}=${renderValue(value)}`);
  }
  if (!codePrinted && record.code !== undefined) parts.push(`code=${record.code}`);
  // Last, over the whole line: the message is printed unquoted, and JSON.stringify escapes C0
  // but leaves DEL, C1 and the bidi controls raw in quoted values, objects and error messages.
  return escapeControls(parts.join(' '));
}

const RESERVED_JSON_KEYS = new Set(['time', 'level', 'prefix', 'section', 'code', 'message']);

/** File line: `{time, level, prefix, section, code?, message, ...meta}`; meta keys never shadow the fixed ones. */
export function formatJsonLine(record: LogRecord): string {
  const out: Record<string, unknown> = {
    time: record.time.toISOString(),
    level: record.level,
    prefix: record.prefix,
    section: record.section,
  };
  if (record.code !== undefined) out.code = record.code;
  out.message = record.message;
  for (const [key, value] of Object.entries(record.meta)) {
    if (value === undefined) continue;
    if (key === 'code' && value === record.code) continue;
    out[RESERVED_JSON_KEYS.has(key) ? `meta_${key}` : key] = value;
  }
  return JSON.stringify(out);
}
