// `@conclave/common/core`: the Logger interface, the error catalog with ConclaveError and its
// status map, and backoff. Nothing here loads winston, zod or yaml or touches the file system,
// so a library such as protocol can use these without pulling in the logger's implementation.
// The root entry re-exports all of this (`export * from ./core.js`).
export type { LogPrefix, Section, LogLevel, LogMeta, Logger } from './logger.js';
export { LOG_LEVELS, SECTIONS, levelPasses } from './logger.js';
export type { StatusName, ErrorEntry, CatalogEntry } from './errors/error-entry.js';
export {
  CATALOG,
  LOG_PREFIXES,
  SECTION_RANGES,
  buildCatalog,
  defineErrors,
  isErrorCode,
  lookupError,
  parseErrorCode,
  type CodeShape,
  type ErrorCode,
} from './errors/catalog/index.js';
export {
  ConclaveError,
  isConclaveError,
  toConclaveError,
  type ConclaveErrorOptions,
} from './errors/conclave-error.js';
export {
  STATUS_MAP,
  grpcStatusOf,
  httpStatusOf,
  statusNameOfGrpc,
  type StatusCodes,
} from './errors/status-map.js';
export {
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_CAP_MS,
  DEFAULT_RETRIES,
  Backoff,
  backoffDelayMs,
  retry,
  sleep,
  type BackoffOptions,
  type RetryOptions,
} from './backoff.js';
// Durable writes are needed where files must survive a power cut: node state, and the keys protocol writes.
export { ensurePrivateDir, fsyncDir, renameDurable, writeFileDurable, type DurableFs, type DurableWriteOptions } from './durable-file.js';
