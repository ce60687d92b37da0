import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ConclaveError, ensurePrivateDir, renameDurable, type Logger } from '@conclave/common';

export interface ModelStoreOptions {
  /** Directory of the verified model files (`<sha256>.onnx`) and partial downloads (`.part`). */
  dir: string;
  logger: Logger;
}

/** What `verifyAll` found. */
export interface VerifyReport {
  /** Digests of the files that match their name, now offered by `has` and `list`. */
  readonly verified: string[];
  /** Digests whose file did not match and was deleted. */
  readonly removed: string[];
}

const SHA256_PATTERN = /^[0-9a-f]{64}$/;
const MODEL_SUFFIX = '.onnx';
const PART_SUFFIX = '.onnx.part';

/** Throws NODE-LOAD-108 unless `sha256` is 64 lowercase hex digits: it becomes a file name. */
export function assertSha256(sha256: string): void {
  if (!SHA256_PATTERN.test(sha256)) {
    throw new ConclaveError('NODE-LOAD-108', { detail: JSON.stringify(sha256.slice(0, 80)) });
  }
}

/** The sha256 of a file, hex, read as a stream (models are too big to read at once). */
export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Content-addressed model files. A model is offered (`has`, `list`, `pathOf` for
 * loading) only after its bytes were hashed and matched its name: by `finish()` of a
 * download, or by `verifyAll()` at startup. A file that does not match is deleted.
 */
export class ModelStore {
  readonly dir: string;
  private readonly logger: Logger;
  private readonly verified = new Set<string>();
  private readonly writing = new Set<string>();

  constructor(options: ModelStoreOptions) {
    this.dir = options.dir;
    this.logger = options.logger.child({ store: options.dir });
  }

  /** Whether a verified file for this digest is present. */
  has(sha256: string): boolean {
    return this.verified.has(sha256);
  }

  /** Digests of the verified files. */
  list(): string[] {
    return [...this.verified].sort();
  }

  /** Where the model's file is (or will be); validates the digest. */
  pathOf(sha256: string): string {
    assertSha256(sha256);
    return join(this.dir, `${sha256}${MODEL_SUFFIX}`);
  }

  /** Bytes already downloaded for this digest: a `.part` left by an interrupted download. */
  async resumeOffset(sha256: string): Promise<number> {
    try {
      return (await stat(this.partPathOf(sha256))).size;
    } catch (err) {
      if (isNotFound(err)) return 0;
      throw err;
    }
  }

  /**
   * Hashes every stored model against its name, at startup: a file changed on disk
   * (corruption, tampering) is deleted and reported, never offered. `.part` files are
   * kept for resuming.
   */
  async verifyAll(): Promise<VerifyReport> {
    // 0700, and tightened if an older version made it 0755.
    await ensurePrivateDir(this.dir);
    const verified: string[] = [];
    const removed: string[] = [];
    for (const entry of (await readdir(this.dir)).sort()) {
      if (!entry.endsWith(MODEL_SUFFIX)) continue;
      const sha256 = entry.slice(0, -MODEL_SUFFIX.length);
      if (!SHA256_PATTERN.test(sha256)) continue;
      const path = join(this.dir, entry);
      const actual = await sha256OfFile(path);
      if (actual === sha256) {
        this.verified.add(sha256);
        verified.push(sha256);
      } else {
        this.verified.delete(sha256);
        await rm(path, { force: true });
        removed.push(sha256);
        this.logger.failure(new ConclaveError('NODE-LOAD-107', { data: { model: sha256, actual, path } }), {}, 'warn');
      }
    }
    this.logger.info('LOAD', 'model store verified', { verified: verified.length, removed: removed.length });
    return { verified, removed };
  }

  /**
   * Starts or resumes the download of a model of `totalSize` bytes. Only one writer per
   * digest at a time (NODE-LOAD-109). Write from `writer.offset`, which is the resume point.
   */
  async beginWrite(sha256: string, totalSize: number): Promise<ModelWriter> {
    assertSha256(sha256);
    if (!Number.isSafeInteger(totalSize) || totalSize < 0) {
      throw new RangeError(`beginWrite: totalSize must be a non-negative integer, got ${totalSize}`);
    }
    if (this.writing.has(sha256)) throw new ConclaveError('NODE-LOAD-109', { data: { model: sha256 } });
    this.writing.add(sha256);
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const partPath = this.partPathOf(sha256);
      // 'a' creates the file or keeps what an interrupted download left; writes then
      // always land at the end, which is exactly `offset`.
      const handle = await open(partPath, 'a', 0o600);
      let offset = (await handle.stat()).size;
      if (offset > totalSize) {
        // A leftover from a different declared size cannot be resumed.
        await handle.truncate(0);
        offset = 0;
      }
      return new ModelWriter({
        sha256,
        totalSize,
        offset,
        handle,
        partPath,
        finalPath: this.pathOf(sha256),
        onVerified: () => this.verified.add(sha256),
        onClose: () => this.writing.delete(sha256),
        logger: this.logger,
      });
    } catch (err) {
      this.writing.delete(sha256);
      throw err;
    }
  }

  /** Deletes a model's file and any partial download. */
  async remove(sha256: string): Promise<void> {
    this.verified.delete(sha256);
    await rm(this.pathOf(sha256), { force: true });
    await rm(this.partPathOf(sha256), { force: true });
  }

  private partPathOf(sha256: string): string {
    assertSha256(sha256);
    return join(this.dir, `${sha256}${PART_SUFFIX}`);
  }
}

interface ModelWriterInit {
  readonly sha256: string;
  readonly totalSize: number;
  readonly offset: number;
  readonly handle: FileHandle;
  readonly partPath: string;
  readonly finalPath: string;
  readonly onVerified: () => void;
  readonly onClose: () => void;
  readonly logger: Logger;
}

/** `open` → `finished` (verified and stored) | `closed` (kept for resuming, or discarded). */
export type ModelWriterState = 'open' | 'finished' | 'closed';

/** One download into the store; chunks must arrive in order. */
export class ModelWriter {
  readonly sha256: string;
  readonly totalSize: number;
  private readonly init: ModelWriterInit;
  private written: number;
  private stateValue: ModelWriterState = 'open';
  /** Writes are chained so that the file grows in the order the offsets were accepted. */
  private pending: Promise<void> = Promise.resolve();
  private handleClosed = false;

  constructor(init: ModelWriterInit) {
    this.init = init;
    this.sha256 = init.sha256;
    this.totalSize = init.totalSize;
    this.written = init.offset;
  }

  /** Bytes accepted so far: where the next chunk must start. */
  get offset(): number {
    return this.written;
  }

  get state(): ModelWriterState {
    return this.stateValue;
  }

  /** Appends `chunk`, which must start at `offset` (NODE-LOAD-105) and not pass `totalSize` (NODE-LOAD-106). */
  write(offset: number, chunk: Uint8Array): Promise<void> {
    this.assertOpen();
    if (offset !== this.written) {
      return Promise.reject(new ConclaveError('NODE-LOAD-105', {
        detail: `chunk at ${offset}, expected ${this.written}`,
        data: { model: this.sha256, offset, expected: this.written },
      }));
    }
    if (this.written + chunk.byteLength > this.totalSize) {
      return Promise.reject(new ConclaveError('NODE-LOAD-106', {
        detail: `${this.written + chunk.byteLength} bytes, declared ${this.totalSize}`,
        data: { model: this.sha256 },
      }));
    }
    this.written += chunk.byteLength;
    const next = this.pending.then(async () => {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await this.init.handle.write(chunk, done, chunk.byteLength - done);
        done += bytesWritten;
      }
    });
    this.pending = next;
    return next;
  }

  /**
   * Checks size and sha256 of the whole file (resumed parts included) and moves it into
   * place. On a mismatch the partial file is deleted and NODE-LOAD-104 thrown: a file
   * that does not match is never used. Returns the model's path.
   */
  async finish(): Promise<string> {
    this.assertOpen();
    const { handle, partPath, finalPath, logger } = this.init;
    // No write is accepted from here on, whatever the outcome.
    this.stateValue = 'closed';
    try {
      await this.pending;
      await handle.sync();
      if (this.written !== this.totalSize) {
        await rm(partPath, { force: true });
        throw new ConclaveError('NODE-LOAD-106', {
          detail: `${this.written} bytes, declared ${this.totalSize}`,
          data: { model: this.sha256 },
        });
      }
      const actual = await sha256OfFile(partPath);
      if (actual !== this.sha256) {
        await rm(partPath, { force: true });
        throw new ConclaveError('NODE-LOAD-104', { detail: `sha256 is ${actual}`, data: { model: this.sha256, actual } });
      }
      // The file was fsync'd above; the directory sync keeps the rename across a power cut.
      await renameDurable(partPath, finalPath);
      this.stateValue = 'finished';
      this.init.onVerified();
      logger.info('LOAD', 'model stored', { model: this.sha256, bytes: this.totalSize });
      return finalPath;
    } finally {
      await this.closeHandle();
    }
  }

  /** Stops writing and keeps the `.part`, so the next `beginWrite` resumes from it. */
  async abort(): Promise<void> {
    if (this.stateValue !== 'open') return;
    this.stateValue = 'closed';
    await this.pending.catch(() => undefined);
    await this.closeHandle();
  }

  /** Stops writing and deletes the `.part`. */
  async discard(): Promise<void> {
    await this.abort();
    await rm(this.init.partPath, { force: true });
  }

  /** Closes the file once and frees the digest for another writer. */
  private async closeHandle(): Promise<void> {
    if (this.handleClosed) return;
    this.handleClosed = true;
    await this.init.handle.close().catch(() => undefined);
    this.init.onClose();
  }

  private assertOpen(): void {
    if (this.stateValue !== 'open') throw new Error(`ModelWriter for ${this.sha256} is ${this.stateValue}`);
  }
}

function isNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT';
}
