import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** The parts of `node:fs/promises` the durable writes use; tests pass a wrapper to watch the syncs. */
export interface DurableFs {
  open: typeof open;
  rename: typeof rename;
  rm: typeof rm;
}

const NODE_FS: DurableFs = { open, rename, rm };

export interface DurableWriteOptions {
  /** Mode of a file the write creates. @default 0o600 */
  mode?: number;
  /** @default node:fs/promises */
  fs?: DurableFs;
}

/**
 * Writes `data` to `path` so that after a power cut the path holds either the old contents or
 * all of the new: to a temporary file beside it, fsync'd, renamed over `path`, then the
 * directory fsync'd (without that the rename itself may be lost, and ext4 may show an empty file).
 * On a failure the temporary file is removed and `path` is untouched.
 */
export async function writeFileDurable(path: string, data: string | Uint8Array, options: DurableWriteOptions = {}): Promise<void> {
  const fs = options.fs ?? NODE_FS;
  // A unique name: two writers of the same path (a pin added while the token is dropped) never share one.
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await fs.open(temp, 'w', options.mode ?? 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await renameDurable(temp, path, fs);
  } catch (err) {
    // A no-op once the rename happened (only the directory's fsync failed).
    await fs.rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** Renames `from` to `to` (same directory or file system) and fsyncs the target's directory. The caller has fsync'd the file. */
export async function renameDurable(from: string, to: string, fs: DurableFs = NODE_FS): Promise<void> {
  await fs.rename(from, to);
  await fsyncDir(dirname(to), fs);
}

/** Makes a rename or unlink in `dir` survive a power cut. */
export async function fsyncDir(dir: string, fs: DurableFs = NODE_FS): Promise<void> {
  // Windows cannot open a directory for sync; NTFS journals the rename itself.
  if (process.platform === 'win32') return;
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates `dir` (and missing parents) with mode 0700 and tightens an existing one to 0700:
 * a directory made by an older version, or by hand, may be 0755.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (process.platform !== 'win32') await chmod(dir, 0o700);
}
