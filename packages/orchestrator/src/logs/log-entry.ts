import type { LogLevel, LogPrefix, Section } from '@conclave/common';

/** Which stored records a reader wants; every filter given must match. */
export interface LogFilter {
  prefixes?: readonly LogPrefix[];
  /** A node id (names are resolved to ids before a filter is built). */
  nodeId?: string;
  section?: Section;
  /** The least severe level wanted: `warn` means warn and error. */
  level?: LogLevel;
  jobId?: string;
  /** Records at or after this time. */
  sinceMs?: number;
  /** Resume right after this entry id; wins over sinceMs. */
  afterId?: string;
  /** History before following: the newest N, or the first N after sinceMs/afterId. */
  limit?: number;
}

/** One stored record, as readers (the CLI, the dashboard) see it. */
export interface StoredLogEntry {
  /** The stream id; `afterId` resumes after it. Ids sort by time of storing. */
  id: string;
  timeMs: number;
  level: LogLevel;
  prefix: LogPrefix;
  section: Section;
  code?: string;
  message: string;
  /** For records a node shipped: its id and name. */
  node?: string;
  nodeName?: string;
  jobId?: string;
  /** The record's other fields, redacted. */
  fields: Record<string, unknown>;
  /** A gap record: records that exist no more; `fields.count` and `fields.reason` say which. */
  gap?: boolean;
}

/** Reads the fleet log store (logs/log-store.ts). */
export interface LogReader {
  /** The stored records that match, oldest first. */
  read(filter: LogFilter): Promise<StoredLogEntry[]>;
  /**
   * The stored records that match (as `read`), then every new one as it is stored, in batches,
   * until `signal` aborts. A follower that fell behind a trim gets a gap entry saying so.
   */
  follow(filter: LogFilter, signal: AbortSignal): AsyncIterable<StoredLogEntry[]>;
}
