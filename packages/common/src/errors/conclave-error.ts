import type { CatalogEntry } from './error-entry.js';
import { lookupError, type ErrorCode } from './catalog/index.js';

export interface ConclaveErrorOptions {
  /** What specifically went wrong; appended to the catalog message. */
  detail?: string;
  /** Structured data for logs and the wire (ids, paths); never secrets. */
  data?: Record<string, unknown>;
  cause?: unknown;
}

/** An error with a catalog code: its section, status and recovery come from the catalog. */
export class ConclaveError extends Error {
  override readonly name = 'ConclaveError';
  readonly code: ErrorCode;
  readonly entry: CatalogEntry;
  readonly detail?: string;
  readonly data: Record<string, unknown>;

  constructor(code: ErrorCode, options: ConclaveErrorOptions = {}) {
    const entry = lookupError(code);
    const { detail, data = {}, cause } = options;
    super(detail ? `${entry.message}: ${detail}` : entry.message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.entry = entry;
    if (detail !== undefined) this.detail = detail;
    this.data = data;
  }
}

export function isConclaveError(x: unknown): x is ConclaveError {
  return x instanceof ConclaveError;
}

/**
 * Returns `err` when it already is a ConclaveError, otherwise wraps it under
 * `fallbackCode` with its message as detail and the original as `cause`.
 */
export function toConclaveError(err: unknown, fallbackCode: ErrorCode): ConclaveError {
  if (isConclaveError(err)) return err;
  const detail = err instanceof Error ? err.message : typeof err === 'string' ? err : safeString(err);
  return new ConclaveError(fallbackCode, { ...(detail ? { detail } : {}), cause: err });
}

function safeString(x: unknown): string {
  try {
    return JSON.stringify(x) ?? String(x);
  } catch {
    return String(x);
  }
}
