import type { ChatMessage, NodeInfo } from '@conclave/protocol';
import type { JobRecord } from '../job-store.js';
import type { LogReader } from '../logs/log-entry.js';

/** A job as the dashboard shows it: the record without its tensors. */
export type DashboardJob = Pick<JobRecord, 'id' | 'state' | 'kind' | 'model' | 'node' | 'attempts' | 'createdAtMs' | 'finishedAtMs' | 'runMs'> & {
  error?: { code?: string; message?: string };
};

/** A chat room with its newest messages, oldest first. */
export interface DashboardRoom {
  name: string;
  headSeq: number;
  members: number;
  messages: ChatMessage[];
}

/** BullMQ's job counts by state (`waiting`, `active`, `delayed`, `prioritized`, `failed`, …). */
export type QueueCounts = Record<string, number>;

/**
 * What the dashboard reads. Each call is made at most once per update tick, and only while a
 * page is open; a source that fails or hangs greys out its own panel, not the others.
 */
export interface DashboardSources {
  /** Every node the registry knows (NodeRegistry.list, as ListNodes answers). */
  nodes(): Promise<NodeInfo[]>;
  /**
   * Jobs for the panel, newest first: at least the newest `perList` running and queued ones,
   * and recent jobs of any state for the failed and finished lists (the panel shows `perList` of each).
   */
  jobs(perList: number): Promise<DashboardJob[]>;
  queue(): Promise<QueueCounts>;
  /** The rooms, each with its newest messages (at most `messagesPerRoom`). */
  chatRooms(messagesPerRoom: number): Promise<DashboardRoom[]>;
  /** The fleet log store; absent: the live tail says that logs are not stored here. */
  logs?: LogReader;
}

/** A job record as the dashboard keeps it: no outputs, no generated text. */
export function dashboardJobOf(record: JobRecord): DashboardJob {
  const { id, state, kind, model, node, attempts, createdAtMs, finishedAtMs, runMs, error } = record;
  return {
    id, state, kind, model, node, attempts, createdAtMs, finishedAtMs, runMs,
    // A completed job keeps an earlier attempt's error in its record; it has none (as toWireJob).
    ...(error && state !== 'completed' ? { error: { code: error.code ?? '', message: error.message ?? '' } } : {}),
  };
}
