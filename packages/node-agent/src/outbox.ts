import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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

interface Unacked {
  result: JobResult;
  persisted: boolean;
  timer?: NodeJS.Timeout;
}

/**
 * Results waiting for the orchestrator's acknowledgement, so that a network drop or a reboot
 * loses none: they are sent again on reconnect until acknowledged. A result that could not be
 * sent, or whose ack does not come within ACK_GRACE_MS, or that is still unacknowledged when
 * the session drops, is written to its own file (to a temporary name, then renamed, so a crash
 * never leaves half a result). The one window this leaves — the agent dies within the grace
 * period after sending — loses nothing either: the orchestrator sees the node lost and runs
 * the job again elsewhere.
 */
export class Outbox {
  private readonly unacked = new Map<string, Unacked>();

  constructor(private readonly dir: string) {}

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** Keeps a result until acknowledged; `sent` says whether it went out on a live session. */
  async put(result: JobResult, sent: boolean): Promise<void> {
    const key = keyOf(result.jobId ?? '', result.attempt ?? 0);
    const entry: Unacked = { result, persisted: false };
    this.unacked.set(key, entry);
    if (!sent) {
      await this.persist(entry);
      return;
    }
    entry.timer = setTimeout(() => void this.persist(entry).catch(() => undefined), ACK_GRACE_MS);
    entry.timer.unref();
  }

  async ack(jobId: string, attempt: number): Promise<void> {
    const key = keyOf(jobId, attempt);
    const entry = this.unacked.get(key);
    this.unacked.delete(key);
    clearTimeout(entry?.timer);
    if (!entry || entry.persisted) await rm(this.pathOf(jobId, attempt), { force: true });
  }

  /** The session dropped: everything still unacknowledged goes to disk now. */
  async persistAll(): Promise<void> {
    await Promise.all([...this.unacked.values()].map((entry) => this.persist(entry)));
  }

  private async persist(entry: Unacked): Promise<void> {
    clearTimeout(entry.timer);
    const { jobId = '', attempt = 0 } = entry.result;
    if (entry.persisted || !this.unacked.has(keyOf(jobId, attempt))) return;
    entry.persisted = true;
    const path = this.pathOf(jobId, attempt);
    await writeFile(`${path}.tmp`, JSON.stringify(toStored(entry.result)), { mode: 0o600 });
    await rename(`${path}.tmp`, path);
    // Acknowledged while it was being written: the file is not needed after all.
    if (!this.unacked.has(keyOf(jobId, attempt))) await rm(path, { force: true });
  }

  /** Every unacknowledged result: on disk (earlier sessions, reboots) and in memory. */
  async pending(): Promise<JobResult[]> {
    const names = (await readdir(this.dir)).filter((n) => n.endsWith('.json')).sort();
    const results: JobResult[] = [...this.unacked.values()].filter((e) => !e.persisted).map((e) => e.result);
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
