import { once } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type { ControlHandlers, LogEntries, LogEntry, LogQuery__Output, NodeInfo } from '@conclave/protocol';
import { toServiceError } from '../grpc-errors.js';
import { UNGUARDED } from '../state-store-guard.js';
import type { StateStoreGuard } from '../state-store-guard.js';
import type { JobStateName } from '../job-store.js';
import { TERMINAL_STATES } from '../job-store.js';
import type { LogFilter, StoredLogEntry } from './log-entry.js';
import { filterOfQuery, resolveNode } from './log-query.js';
import type { LogStore } from './log-store.js';

/** Entries per message of the stream: a page of history, well under a gRPC message's limit. */
const ENTRIES_PER_MESSAGE = 500;
/**
 * How long a job's follower stays after the job ended: the node ships its last lines (its
 * "completed") up to a flush interval and a round trip after its result.
 */
export const JOB_END_GRACE_MS = 1_500;
/** How often a job's follower looks at the job's state. */
const JOB_POLL_MS = 250;

export interface LogControlServiceOptions {
  store: LogStore;
  logger: Logger;
  /** Every node that ever registered, for `--node NAME`. */
  nodes: () => Promise<NodeInfo[]>;
  /** A job's state, or undefined for an unknown (or expired) job. */
  jobState: (jobId: string) => Promise<JobStateName | undefined>;
  /** Fails the filter checks and the history read at once while Redis is away (ORCH-STATE-710). @default none */
  stateStore?: StateStoreGuard;
}

export type LogControlHandlers = Pick<ControlHandlers, 'TailLogs'>;

/** The handlers, and a close that ends every follower as UNAVAILABLE (ORCH-NET-610), so that each follows again from its last record. */
export interface LogControlService {
  handlers: LogControlHandlers;
  close(): void;
}

export function toLogEntry(entry: StoredLogEntry): LogEntry {
  return {
    id: entry.id, timeMs: entry.timeMs, level: entry.level, prefix: entry.prefix, section: entry.section, code: entry.code ?? '',
    message: entry.message, node: entry.node ?? '', nodeName: entry.nodeName ?? '', jobId: entry.jobId ?? '',
    fieldsJson: Object.keys(entry.fields).length > 0 ? JSON.stringify(entry.fields) : '', gap: entry.gap ?? false,
  };
}

/** Control.TailLogs: the fleet log store's history, then (with `follow`) what comes. */
export function createLogControlService(o: LogControlServiceOptions): LogControlService {
  const followers = new Set<(error: unknown) => void>();
  const guard = o.stateStore ?? UNGUARDED;

  async function filterOf(query: LogQuery__Output): Promise<LogFilter> {
    const nodeId = query.node ? resolveNode(query.node, await o.nodes()) : undefined;
    const filter = filterOfQuery(query, nodeId);
    if (filter.jobId !== undefined && (await o.jobState(filter.jobId)) === undefined && !(await o.store.hasJob(filter.jobId))) {
      throw new ConclaveError('ORCH-REQ-262', { detail: JSON.stringify(filter.jobId), data: { jobId: filter.jobId } });
    }
    return filter;
  }

  function tailLogs(call: grpc.ServerWritableStream<LogQuery__Output, LogEntries>): void {
    const stopped = new AbortController();
    let ended = false;
    const finish = (error?: unknown): void => {
      if (ended) return;
      ended = true;
      stopped.abort();
      if (error !== undefined) call.emit('error', Object.assign(new Error(), toServiceError(error, o.logger)));
      else call.end();
    };
    const gone = (): void => {
      ended = true;
      stopped.abort();
    };
    call.on('cancelled', gone);
    call.on('close', gone);
    const endWith = (error: unknown) => finish(error);
    followers.add(endWith);
    call.on('close', () => followers.delete(endWith));

    /** Writes in pages, waiting for the stream to drain: a slow reader slows the reads, it does not grow a queue. */
    const send = async (entries: readonly StoredLogEntry[], jobEnded = false): Promise<void> => {
      for (let i = 0; i < entries.length || (jobEnded && i === 0); i += ENTRIES_PER_MESSAGE) {
        if (ended) return;
        const page = entries.slice(i, i + ENTRIES_PER_MESSAGE).map(toLogEntry);
        const last = i + ENTRIES_PER_MESSAGE >= entries.length;
        if (!call.write({ entries: page, jobEnded: jobEnded && last })) {
          await once(call, 'drain', { signal: stopped.signal }).catch(() => undefined);
        }
      }
    };

    const run = async (): Promise<void> => {
      const query = call.request;
      // With Redis away the call fails at once (ORCH-STATE-710) instead of waiting for it.
      const filter = await guard(() => filterOf(query));
      if (!query.follow) {
        await send(await guard(() => o.store.read(filter)));
        finish();
        return;
      }
      // A job's end does not cut the follow: it stops waiting, reads what is stored by then, and ends.
      const drain = new AbortController();
      const jobEnd = filter.jobId !== undefined ? watchJobEnd(filter.jobId, o.jobState, stopped.signal) : undefined;
      void jobEnd?.then((endedJob) => {
        if (endedJob) drain.abort();
      });
      for await (const batch of o.store.follow(filter, stopped.signal, { drain: drain.signal })) {
        await send(batch);
        if (ended) return;
      }
      if (ended) return;
      // Only a job's end stops a follower from the orchestrator's side.
      if (drain.signal.aborted) await send([], true);
      finish();
    };
    run().catch((err: unknown) => {
      if (ended) return;
      finish(err);
    });
  }

  return {
    handlers: { TailLogs: tailLogs },
    close() {
      for (const end of [...followers]) end(new ConclaveError('ORCH-NET-610'));
      followers.clear();
    },
  };
}

/**
 * Resolves true JOB_END_GRACE_MS after the job is seen in a terminal state (or at once when its
 * record is gone: an expired job whose records outlived it); false when `signal` aborts first.
 */
async function watchJobEnd(jobId: string, jobState: (jobId: string) => Promise<JobStateName | undefined>, signal: AbortSignal): Promise<boolean> {
  const sleep = (ms: number) => new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
  while (!signal.aborted) {
    const state = await jobState(jobId).catch(() => 'unknown' as const);
    if (state === undefined) return !signal.aborted;
    if (state !== 'unknown' && TERMINAL_STATES.has(state)) {
      await sleep(JOB_END_GRACE_MS);
      return !signal.aborted;
    }
    await sleep(JOB_POLL_MS);
  }
  return false;
}
