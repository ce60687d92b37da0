import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ConclaveError, ensurePrivateDir, nullLogger, writeFileDurable, type DurableFs, type Logger } from '@conclave/common';
import type { JobResult, Tensor } from '@conclave/protocol';

type StoredResult = Omit<JobResult, 'outputs'> & {
  outputs?: { tensors: Record<string, { dtype: string; dims: number[]; raw: string }> };
};

/**
 * How long a result sent over a live session may wait for its ack in memory before it is
 * written to disk. Most acks arrive within milliseconds, so the common path never touches
 * the SSD; a result whose ack is late (or whose session drops) is persisted.
 */
export const ACK_GRACE_MS = 1_000;

/**
 * How often a connected node looks for results still unacknowledged after the ack grace and
 * sends them again: the orchestrator acks a result only once Redis holds it, so through a
 * Redis outage results stay unacked and must go again when it is back.
 */
export const RESEND_INTERVAL_MS = 5_000;

export interface OutboxOptions {
  /** @default ACK_GRACE_MS */
  ackGraceMs?: number;
  /** Injected by tests to watch the fsyncs. @default node:fs/promises */
  fs?: DurableFs;
  /** Where a write that fails after the ack grace is reported (NODE-STATE-708). @default nullLogger */
  logger?: Logger;
}

interface Unacked {
  result: JobResult;
  /** True only once its file is written: until then pending() and persistAll() still see it in memory. */
  persisted: boolean;
  /** The write under way, shared by the grace timer and persistAll. */
  writing?: Promise<void>;
  /** When it last went out on a live session; undefined: never (offline, or read back from disk). */
  sentAtMs?: number;
  timer?: NodeJS.Timeout;
}

/**
 * Results waiting for the orchestrator's acknowledgement, so that a network drop or a reboot
 * loses none: they are sent again on reconnect until acknowledged. A result that could not be
 * sent, or whose ack does not come within ACK_GRACE_MS, or that is still unacknowledged when
 * the session drops, is written to its own file (to a temporary name, fsync'd, renamed, and the
 * directory fsync'd, so a crash or power cut never leaves half a result). While connected,
 * `startResending` sends again whatever stays unacknowledged. The one window this leaves — the agent dies within the grace
 * period after sending — loses nothing either: the orchestrator sees the node lost and runs
 * the job again elsewhere.
 */
export class Outbox {
  private readonly unacked = new Map<string, Unacked>();

  private readonly ackGraceMs: number;

  constructor(
    private readonly dir: string,
    private readonly options: OutboxOptions = {},
  ) {
    this.ackGraceMs = options.ackGraceMs ?? ACK_GRACE_MS;
  }

  /** Creates the directory (0700: results are the fleet's data) and takes in what earlier runs left on disk. */
  async open(): Promise<void> {
    await ensurePrivateDir(this.dir);
    for (const result of await this.readDisk()) {
      const key = keyOf(result.jobId ?? '', result.attempt ?? 0);
      if (!this.unacked.has(key)) this.unacked.set(key, { result, persisted: true });
    }
  }

  /**
   * Keeps a result until acknowledged; `sent` says whether it went out on a live session. Never
   * rejects: a result that cannot be written is logged (NODE-STATE-708) and kept in memory.
   */
  async put(result: JobResult, sent: boolean): Promise<void> {
    const key = keyOf(result.jobId ?? '', result.attempt ?? 0);
    const entry: Unacked = { result, persisted: false, ...(sent ? { sentAtMs: Date.now() } : {}) };
    this.unacked.set(key, entry);
    if (!sent) {
      await this.persistOrLog(entry);
      return;
    }
    entry.timer = setTimeout(() => void this.persistOrLog(entry), this.ackGraceMs);
    entry.timer.unref();
  }

  private async persistOrLog(entry: Unacked): Promise<void> {
    try {
      await this.persist(entry);
    } catch (err) {
      (this.options.logger ?? nullLogger).failure(err);
    }
  }

  /**
   * Sends every unacknowledged result now (a new session: whatever the last one left) through
   * `send`, which says whether it went out; returns how many did.
   */
  resendAll(send: (result: JobResult) => boolean): number {
    return this.resend(send, () => true);
  }

  /**
   * While connected: every `intervalMs`, sends again each result not sent within the ack grace.
   * Returns the function that stops it (the session dropped, the agent closes).
   */
  startResending(send: (result: JobResult) => boolean, intervalMs = RESEND_INTERVAL_MS): () => void {
    const timer = setInterval(() => {
      const now = Date.now();
      this.resend(send, (entry) => entry.sentAtMs === undefined || now - entry.sentAtMs >= this.ackGraceMs);
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  private resend(send: (result: JobResult) => boolean, due: (entry: Unacked) => boolean): number {
    let sent = 0;
    for (const entry of [...this.unacked.values()]) {
      if (!due(entry)) continue;
      if (!send(entry.result)) break;
      entry.sentAtMs = Date.now();
      sent += 1;
    }
    return sent;
  }

  /** Forgets an acknowledged result; rejects with NODE-STATE-709 when its file cannot be removed. */
  async ack(jobId: string, attempt: number): Promise<void> {
    const key = keyOf(jobId, attempt);
    const entry = this.unacked.get(key);
    this.unacked.delete(key);
    clearTimeout(entry?.timer);
    // A write under way removes its own file once it sees the ack (persist).
    if (entry && !entry.persisted) return;
    let path: string;
    try {
      path = this.pathOf(jobId, attempt);
    } catch (err) {
      throw new ConclaveError('NODE-STATE-709', { cause: err, data: { jobId, attempt } });
    }
    await this.remove(path, jobId, attempt);
  }

  private async remove(path: string, jobId: string, attempt: number): Promise<void> {
    try {
      await rm(path, { force: true });
    } catch (err) {
      throw new ConclaveError('NODE-STATE-709', { cause: err, data: { jobId, attempt } });
    }
  }

  /**
   * The session dropped: everything still unacknowledged goes to disk now. Every write is
   * tried; then rejects with the first failure (NODE-STATE-708), whose results stay in memory.
   */
  async persistAll(): Promise<void> {
    const outcomes = await Promise.allSettled([...this.unacked.values()].map((entry) => this.persist(entry)));
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private async persist(entry: Unacked): Promise<void> {
    clearTimeout(entry.timer);
    const { jobId = '', attempt = 0 } = entry.result;
    if (entry.persisted || !this.unacked.has(keyOf(jobId, attempt))) return;
    entry.writing ??= this.write(entry).finally(() => {
      entry.writing = undefined;
    });
    await entry.writing;
  }

  private async write(entry: Unacked): Promise<void> {
    const { jobId = '', attempt = 0 } = entry.result;
    let path: string;
    try {
      path = this.pathOf(jobId, attempt);
      await writeFileDurable(path, JSON.stringify(toStored(entry.result)), { mode: 0o600, ...(this.options.fs ? { fs: this.options.fs } : {}) });
    } catch (err) {
      // Not persisted: it stays in pending()'s in-memory list and persistAll tries it again.
      throw new ConclaveError('NODE-STATE-708', { cause: err, data: { jobId, attempt } });
    }
    entry.persisted = true;
    // Acknowledged while it was being written: the file is not needed after all.
    if (!this.unacked.has(keyOf(jobId, attempt))) await this.remove(path, jobId, attempt);
  }

  /**
   * Every unacknowledged result: in memory and on disk (earlier sessions, reboots), each once.
   * The in-memory part is taken at the call, before the disk is read (registerMessage relies on it).
   */
  async pending(): Promise<JobResult[]> {
    const inMemory = [...this.unacked.values()].filter((e) => !e.persisted).map((e) => e.result);
    const seen = new Set(inMemory.map((r) => keyOf(r.jobId ?? '', r.attempt ?? 0)));
    const onDisk = (await this.readDisk()).filter((r) => !seen.has(keyOf(r.jobId ?? '', r.attempt ?? 0)));
    return [...inMemory, ...onDisk];
  }

  private async readDisk(): Promise<JobResult[]> {
    const names = (await readdir(this.dir)).filter((n) => n.endsWith('.json')).sort();
    const results: JobResult[] = [];
    for (const name of names) {
      try {
        results.push(fromStored(JSON.parse(await readFile(join(this.dir, name), 'utf8')) as StoredResult));
      } catch {
        // A file that cannot be read back is not a result; leave it for an operator to inspect.
      }
    }
    return results;
  }

  private pathOf(jobId: string, attempt: number): string {
    if (!/^[A-Za-z0-9._-]+$/.test(jobId)) throw new Error(`unsafe job id ${JSON.stringify(jobId)}`);
    return join(this.dir, `${jobId}.${attempt}.json`);
  }
}

function keyOf(jobId: string, attempt: number): string {
  return `${jobId}:${attempt}`;
}

function toStored(result: JobResult): StoredResult {
  const { outputs, ...rest } = result;
  if (!outputs?.tensors) return rest;
  const tensors = Object.fromEntries(
    Object.entries(outputs.tensors).map(([name, t]: [string, Tensor]) => [
      name,
      { dtype: t.dtype ?? '', dims: (t.dims ?? []).map(Number), raw: Buffer.from(t.raw ?? Buffer.alloc(0)).toString('base64') },
    ]),
  );
  return { ...rest, outputs: { tensors } };
}

function fromStored(stored: StoredResult): JobResult {
  const { outputs, ...rest } = stored;
  if (!outputs) return rest;
  const tensors = Object.fromEntries(
    Object.entries(outputs.tensors).map(([name, t]) => [name, { dtype: t.dtype, dims: t.dims, raw: Buffer.from(t.raw, 'base64') }]),
  );
  return { ...rest, outputs: { tensors } };
}
