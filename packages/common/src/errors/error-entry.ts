import type { LogPrefix, Section } from '../logger.js';

/** gRPC status names used by the catalog; mapped to numbers and HTTP codes at the edges. */
export type StatusName =
  | 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'ALREADY_EXISTS' | 'PERMISSION_DENIED' | 'UNAUTHENTICATED'
  | 'RESOURCE_EXHAUSTED' | 'FAILED_PRECONDITION' | 'ABORTED' | 'OUT_OF_RANGE' | 'UNIMPLEMENTED'
  | 'INTERNAL' | 'UNAVAILABLE' | 'DATA_LOSS' | 'DEADLINE_EXCEEDED' | 'CANCELLED' | 'UNKNOWN';

/** What the catalog says of one error. The code is the key: `<PREFIX>-<SECTION>-<NUMBER>`. */
export interface ErrorEntry {
  /** One sentence: what went wrong. */
  readonly message: string;
  /** What the system does about it, and what an operator can do. */
  readonly recovery: string;
  readonly status: StatusName;
  /** Whether retrying the same request elsewhere may succeed. */
  readonly retryable?: boolean;
}

export interface CatalogEntry extends ErrorEntry {
  readonly code: string;
  readonly prefix: LogPrefix;
  readonly section: Section;
  readonly number: number;
}
