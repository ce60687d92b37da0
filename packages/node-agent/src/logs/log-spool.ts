import { open, readFile, readdir, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePrivateDir, fsyncDir } from '@conclave/common';
import { decodeSpoolLine, encodeSpoolLine, entryEncodedBytes, firstSeqOf, lastSeqOf, lostCountOf, type SpoolEntry } from './spool-entry.js';

/** A segment file is rotated once it would grow past this. */
export const SPOOL_SEGMENT_MAX_BYTES = 1024 * 1024;
/** Segments the bound holds at least, so that dropping the oldest frees a fraction, not all. */
const MIN_SEGMENTS_IN_BOUND = 4;
/** One read from disk: a full batch (256 KiB encoded) with room for the lines' JSON overhead. */
const READ_CHUNK_BYTES = 512 * 1024;
/** Records are the node's own log lines: for this user only. */
const SEGMENT_FILE_MODE = 0o600;
const SEGMENT_FILE = /^(\d{20})\.jsonl$/;
const NEWLINE = 0x0a;

/** `<first seq, 20 digits>.jsonl`: names sort in seq order. */
export function segmentFileName(firstSeq: number): string {
  return `${String(firstSeq).padStart(20, '0')}.jsonl`;
}

export interface LogSpoolOptions {
  /** Bytes of segment files at most; past it the oldest segment is dropped. */
  maxBytes: number;
  /** @default the smaller of SPOOL_SEGMENT_MAX_BYTES and a quarter of maxBytes */
  segmentMaxBytes?: number;
}

/** What a dropped segment held that was never sent. */
export interface SpoolDrop {
  fromSeq: number;
  toSeq: number;
  /** Records lost: those dropped, and those its gap entries said were lost before (the gap says it now). */
  count: number;
  /** Of `count`, the records dropped here (the others were counted when they were refused). */
  records: number;
}

export interface AppendOutcome {
  /** How many of the entries are on disk, from the first; the others are for the caller to give again. */
  written: number;
  /** Segments dropped to stay within the bound, as far as they held unsent records. */
  drops: SpoolDrop[];
  /** Why `written` falls short. */
  error?: unknown;
}

interface Segment {
  readonly firstSeq: number;
  readonly path: string;
  lastSeq: number;
  bytes: number;
  entries: number;
  records: number;
  /** Records its gap entries say were lost (over the rate budget, before the shipper started). */
  lost: number;
}

/** Where the next read starts, and what the segment held before it. */
interface Cursor {
  segment: Segment;
  offset: number;
  entries: number;
  records: number;
  lost: number;
  /** The seq after the last entry read. */
  nextSeq: number;
}

/**
 * Log entries on disk until the orchestrator has them: segment files of JSON lines named by
 * their first seq, appended in batches, rotated at `segmentMaxBytes`, within `maxBytes` in all
 * (past it the oldest segment goes and its unsent records are reported as a SpoolDrop). Reads
 * go forward from a cursor, from disk, so memory holds no more than one read. The newest
 * segment is kept even once acknowledged: after a restart its last entry is the last seq used.
 *
 * An entry is readable only once it is fdatasync'd: whatever the orchestrator got survives a
 * power cut, so a restart that continues after the last seq on disk never reuses one it saw.
 * Every operation runs in turn on one queue, so a drop never races a read.
 */
export class LogSpool {
  private readonly segments: Segment[] = [];
  private handle: FileHandle | undefined;
  /** Bytes of the newest segment known to be on disk (fdatasync'd). */
  private syncedBytes = 0;
  /** After a failed write whose torn tail could not be cut off: the next append starts a new segment. */
  private newestSealed = false;
  private cursor: Cursor | undefined;
  private totalBytes = 0;
  private lastSeqValue = 0;
  private ackedThrough = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly maxBytes: number;
  private readonly segmentMaxBytes: number;

  private constructor(private readonly dir: string, o: LogSpoolOptions) {
    this.maxBytes = o.maxBytes;
    this.segmentMaxBytes = o.segmentMaxBytes ?? Math.min(SPOOL_SEGMENT_MAX_BYTES, Math.floor(o.maxBytes / MIN_SEGMENTS_IN_BOUND));
  }

  /** Creates the directory (0700) and takes in the segments an earlier run left. */
  static async open(dir: string, options: LogSpoolOptions): Promise<LogSpool> {
    const spool = new LogSpool(dir, options);
    await ensurePrivateDir(dir);
    await spool.load();
    return spool;
  }

  /** Bytes of segment files on disk. */
  get bytes(): number {
    return this.totalBytes;
  }

  /** The last seq on disk; 0 when the spool holds nothing. */
  get lastSeq(): number {
    return this.lastSeqValue;
  }

  /** Entries and bytes after the read cursor. */
  unread(): { entries: number; bytes: number } {
    const c = this.cursorNow();
    if (!c) return { entries: 0, bytes: 0 };
    let entries = c.segment.entries - c.entries;
    let bytes = c.segment.bytes - c.offset;
    for (const segment of this.segments.slice(this.segments.indexOf(c.segment) + 1)) {
      entries += segment.entries;
      bytes += segment.bytes;
    }
    return { entries, bytes };
  }

  /**
   * Appends entries (seq order, after every entry already in); rotates and drops the oldest
   * segments as needed. Never rejects: a failed write is reported in the outcome.
   */
  append(entries: readonly SpoolEntry[]): Promise<AppendOutcome> {
    return this.run(async () => {
      const drops: SpoolDrop[] = [];
      let written = 0;
      try {
        if (this.closed) throw new Error('the log spool is closed');
        const lines = entries.map((entry) => Buffer.from(encodeSpoolLine(entry)));
        while (written < entries.length) {
          const segment = await this.segmentFor(entries[written] as SpoolEntry, (lines[written] as Buffer).length);
          let end = written;
          let bytes = 0;
          while (end < entries.length && (end === written || segment.bytes + bytes + (lines[end] as Buffer).length <= this.segmentMaxBytes)) {
            bytes += (lines[end] as Buffer).length;
            end++;
          }
          drops.push(...(await this.makeRoom(bytes)));
          await this.write(segment, lines.slice(written, end), entries.slice(written, end));
          written = end;
        }
        return { written, drops };
      } catch (err) {
        return { written, drops, error: err };
      }
    });
  }

  /**
   * Entries after the cursor, oldest first: at most `maxEntries`, and at most `maxBytes` as
   * encoded in a batch (always one, if there is one); the cursor moves past them. Entries at
   * or below an acknowledged seq are passed over.
   */
  read(maxEntries: number, maxBytes: number): Promise<SpoolEntry[]> {
    return this.run(async () => {
      const out: SpoolEntry[] = [];
      let bytes = 0;
      while (out.length < maxEntries) {
        const c = this.cursorNow();
        if (!c) break;
        if (c.offset >= c.segment.bytes) {
          const next = this.segments[this.segments.indexOf(c.segment) + 1];
          if (!next) break;
          this.cursor = startOf(next);
          continue;
        }
        const chunk = await this.readChunk(c.segment, c.offset, Math.min(READ_CHUNK_BYTES, c.segment.bytes - c.offset));
        if (chunk.length === 0) {
          // The file is shorter than written (cut by hand): nothing more to read in it.
          c.offset = c.segment.bytes;
          continue;
        }
        let pos = 0;
        let full = false;
        for (let nl = chunk.indexOf(NEWLINE, pos); nl >= 0; nl = chunk.indexOf(NEWLINE, pos)) {
          const entry = decodeSpoolLine(chunk.toString('utf8', pos, nl));
          if (entry && lastSeqOf(entry) > this.ackedThrough) {
            const size = entryEncodedBytes(entry);
            if (out.length > 0 && (out.length >= maxEntries || bytes + size > maxBytes)) {
              full = true;
              break;
            }
            out.push(entry);
            bytes += size;
          }
          advance(c, entry, nl + 1 - pos);
          pos = nl + 1;
        }
        if (full) break;
        // No whole line in a whole chunk is no line of ours (the caps keep lines far shorter): skip it.
        if (pos === 0) c.offset += chunk.length;
      }
      return out;
    });
  }

  /** The orchestrator has every entry through `seq`: segments wholly at or below it go (all but the newest). */
  release(seq: number): Promise<void> {
    return this.run(async () => {
      this.ackedThrough = Math.max(this.ackedThrough, seq);
      while (this.segments.length > 1 && (this.segments[0] as Segment).lastSeq <= seq) await this.remove(this.segments[0] as Segment);
    });
  }

  /** Makes the newest segment durable and closes it; later appends fail. */
  close(): Promise<void> {
    return this.run(async () => {
      this.closed = true;
      const handle = this.handle;
      this.handle = undefined;
      if (!handle) return;
      try {
        await handle.datasync();
      } finally {
        await handle.close();
      }
    });
  }

  private run<T>(op: () => Promise<T>): Promise<T> {
    const result = this.queue.then(op);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private cursorNow(): Cursor | undefined {
    if (this.cursor) return this.cursor;
    const oldest = this.segments[0];
    if (oldest) this.cursor = startOf(oldest);
    return this.cursor;
  }

  private newest(): Segment | undefined {
    return this.segments[this.segments.length - 1];
  }

  /** The segment the entry goes to: the newest if it has room, else a new one named by the entry's seq. */
  private async segmentFor(entry: SpoolEntry, lineBytes: number): Promise<Segment> {
    const newest = this.newest();
    if (newest && (newest.bytes === 0 || (!this.newestSealed && newest.bytes + lineBytes <= this.segmentMaxBytes))) {
      if (!this.handle) {
        this.handle = await open(newest.path, 'a+', SEGMENT_FILE_MODE);
        this.syncedBytes = newest.bytes;
      }
      return newest;
    }
    // The full segment is on disk before the next one starts: only the newest can lose a tail.
    const previous = this.handle;
    this.handle = undefined;
    if (previous) {
      try {
        if (!this.newestSealed) await previous.datasync();
      } finally {
        await previous.close();
      }
    }
    const firstSeq = firstSeqOf(entry);
    const path = join(this.dir, segmentFileName(firstSeq));
    this.handle = await open(path, 'a+', SEGMENT_FILE_MODE);
    // The new name survives a power cut: the segment's last seq is where a restart goes on from.
    await fsyncDir(this.dir);
    this.newestSealed = false;
    this.syncedBytes = 0;
    const segment: Segment = { firstSeq, path, lastSeq: firstSeq - 1, bytes: 0, entries: 0, records: 0, lost: 0 };
    this.segments.push(segment);
    return segment;
  }

  private async write(segment: Segment, lines: readonly Buffer[], entries: readonly SpoolEntry[]): Promise<void> {
    const handle = this.handle as FileHandle;
    const data = Buffer.concat(lines);
    try {
      await handle.appendFile(data);
    } catch (err) {
      // A part may be on disk: cut it off, or the next line would follow half a line.
      await handle.truncate(segment.bytes).catch(() => {
        this.newestSealed = true;
      });
      throw err;
    }
    segment.bytes += data.length;
    this.totalBytes += data.length;
    for (const entry of entries) count(segment, entry);
    this.lastSeqValue = Math.max(this.lastSeqValue, segment.lastSeq);
  }

  /** Drops the oldest segments (never the newest) until `bytes` more fit in the bound. */
  private async makeRoom(bytes: number): Promise<SpoolDrop[]> {
    const drops: SpoolDrop[] = [];
    while (this.totalBytes + bytes > this.maxBytes && this.segments.length > 1) {
      const oldest = this.segments[0] as Segment;
      const c = this.cursorNow();
      // A segment the cursor is past went out whole; one it is in lost what it had not read.
      if (c && c.segment === oldest) {
        const records = oldest.records - c.records;
        const count = records + (oldest.lost - c.lost);
        if (count > 0) drops.push({ fromSeq: c.nextSeq, toSeq: oldest.lastSeq, count, records });
      }
      await this.remove(oldest);
    }
    return drops;
  }

  private async remove(segment: Segment): Promise<void> {
    this.segments.splice(this.segments.indexOf(segment), 1);
    this.totalBytes -= segment.bytes;
    if (this.cursor?.segment === segment) this.cursor = undefined;
    // A file left behind (no permission) is read again after a restart: its seqs are then
    // below what the orchestrator stored, and skipped there.
    await rm(segment.path, { force: true }).catch(() => undefined);
  }

  private async readChunk(segment: Segment, offset: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    if (segment === this.newest() && this.handle) {
      if (this.syncedBytes < segment.bytes) {
        await this.handle.datasync();
        this.syncedBytes = segment.bytes;
      }
      const { bytesRead } = await this.handle.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    }
    const handle = await open(segment.path, 'r');
    try {
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  /**
   * Takes in the segments on disk: counts their entries, removes empty ones, cuts a torn last
   * line off the newest (a crash in the middle of an append) and makes it durable.
   */
  private async load(): Promise<void> {
    const names = (await readdir(this.dir)).filter((name) => SEGMENT_FILE.test(name)).sort();
    let newestFileBytes = 0;
    for (const name of names) {
      const path = join(this.dir, name);
      const data = await readFile(path);
      const firstSeq = Number(SEGMENT_FILE.exec(name)?.[1]);
      // Whole lines only: a torn one at the end is never read.
      const segment: Segment = { firstSeq, path, lastSeq: firstSeq - 1, bytes: 0, entries: 0, records: 0, lost: 0 };
      for (let pos = 0, nl = data.indexOf(NEWLINE); nl >= 0; pos = nl + 1, nl = data.indexOf(NEWLINE, pos)) {
        const entry = decodeSpoolLine(data.toString('utf8', pos, nl));
        if (entry) count(segment, entry);
        segment.bytes = nl + 1;
      }
      if (segment.entries === 0) {
        await rm(path, { force: true });
        continue;
      }
      this.segments.push(segment);
      this.totalBytes += segment.bytes;
      this.lastSeqValue = Math.max(this.lastSeqValue, segment.lastSeq);
      newestFileBytes = data.length;
    }
    const newest = this.newest();
    if (!newest) return;
    this.handle = await open(newest.path, 'a+', SEGMENT_FILE_MODE);
    if (newestFileBytes > newest.bytes) await this.handle.truncate(newest.bytes);
    await this.handle.datasync();
    this.syncedBytes = newest.bytes;
  }
}

function startOf(segment: Segment): Cursor {
  return { segment, offset: 0, entries: 0, records: 0, lost: 0, nextSeq: segment.firstSeq };
}

function advance(c: Cursor, entry: SpoolEntry | undefined, lineBytes: number): void {
  c.offset += lineBytes;
  if (!entry) return;
  c.entries += 1;
  if ('record' in entry) c.records += 1;
  c.lost += lostCountOf(entry);
  c.nextSeq = lastSeqOf(entry) + 1;
}

function count(segment: Segment, entry: SpoolEntry): void {
  segment.entries += 1;
  if ('record' in entry) segment.records += 1;
  segment.lost += lostCountOf(entry);
  segment.lastSeq = Math.max(segment.lastSeq, lastSeqOf(entry));
}
