import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobResult, Tensor } from '@conclave/protocol';

type StoredResult = Omit<JobResult, 'outputs'> & {
  outputs?: { tensors: Record<string, { dtype: string; dims: number[]; raw: string }> };
};

/**
 * Results waiting for the orchestrator's acknowledgement, one file each on the node's disk,
 * so that a network drop or a reboot loses none: they are sent again on reconnect until
 * acknowledged. Files are written to a temporary name and renamed, so a crash never leaves
 * half a result.
 */
export class Outbox {
  constructor(private readonly dir: string) {}

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  async put(result: JobResult): Promise<void> {
    const path = this.pathOf(result.jobId ?? '', result.attempt ?? 0);
    await writeFile(`${path}.tmp`, JSON.stringify(toStored(result)), { mode: 0o600 });
    await rename(`${path}.tmp`, path);
  }

  async ack(jobId: string, attempt: number): Promise<void> {
    await rm(this.pathOf(jobId, attempt), { force: true });
  }

  async pending(): Promise<JobResult[]> {
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
