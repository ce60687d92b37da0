import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ConclaveError, ensurePrivateDir, nullLogger, writeFileDurable, type DurableFs, type Logger } from '@conclave/common';

/** The journal's file name in the outbox directory (`<data-dir>/chat-outbox/`). */
export const CHAT_OUTBOX_JOURNAL = 'posts.jsonl';
/** Posts the outbox holds at most; one more is CHAT-STATE-706. */
export const CHAT_OUTBOX_MAX_POSTS = 10_000;
/** Bytes of post text and ids the outbox holds at most (16 MiB). */
export const CHAT_OUTBOX_MAX_BYTES = 16 * 1024 * 1024;
/**
 * Removal records are compacted away once this many accumulate and they outnumber the posts
 * still pending: the journal stays within a few times the pending posts.
 */
const COMPACT_AFTER_DONE = 1024;

/** A post as the outbox keeps it: the request the orchestrator gets, and when the caller made it. */
export interface OutboxPost {
  room: string;
  clientMsgId: string;
  text: string;
  resource?: string;
  fence?: number;
  atMs: number;
}

export interface OutboxEntry {
  /** Order of acceptance, kept across restarts: posts go out in this order. */
  readonly n: number;
  readonly post: OutboxPost;
  readonly bytes: number;
  /** Its record is in the journal and fsync'd: it survives a crash. */
  readonly durable: boolean;
}

export interface ChatOutboxOptions {
  /** @default CHAT_OUTBOX_MAX_POSTS */
  maxPosts?: number;
  /** @default CHAT_OUTBOX_MAX_BYTES */
  maxBytes?: number;
  /** Where unreadable journal lines are reported. @default nullLogger */
  logger?: Logger;
  /** Injected by tests to make writes fail. @default node:fs/promises */
  fs?: DurableFs;
}

interface Entry extends OutboxEntry {
  durable: boolean;
  /** Its record is queued or being written: a removal must then be recorded after it. */
  writing?: Promise<void>;
}

interface PendingWrite {
  readonly line: string;
  readonly entry?: Entry;
  /** Set when a caller waits for the line to be on disk. */
  readonly waiter?: { resolve: () => void; reject: (err: unknown) => void };
}

/**
 * Posts accepted from local programs and not yet answered by the orchestrator (posted, or
 * refused for good). Memory first; a post is written to disk only when asked (`persist`): when
 * its caller is about to be told "queued" (offline, session lost, no answer in time). So a
 * connected node whose posts are answered quickly never touches the SSD for them, and a post a
 * caller was told is queued survives a crash or power cut.
 *
 * On disk: one append-only journal of JSON lines, `{"n", room, clientMsgId, text, …}` for a post
 * and `{"done": n}` once it is answered. Appends are group-committed: every line queued while a
 * write is under way goes in the next single write and fdatasync. A crash can only tear the last
 * line, which is not valid JSON and is skipped on reading: its writer had not been told it was
 * durable. Opening rewrites the journal with only the pending posts (writeFileDurable: the whole
 * file or the old one), as does a write failure (the next write starts from a clean file) and a
 * journal mostly made of removals.
 */
export class ChatOutbox {
  private readonly entries = new Map<number, Entry>();
  private nextN = 1;
  private totalBytes = 0;
  private handle: FileHandle | undefined;
  private queue: PendingWrite[] = [];
  private writing: Promise<void> | undefined;
  /** After a failed write the file may end in a torn line: the next write rewrites it whole. */
  private needsRewrite = false;
  private doneRecords = 0;
  private closed = false;
  private readonly maxPosts: number;
  private readonly maxBytes: number;
  private readonly logger: Logger;
  private readonly path: string;

  private constructor(private readonly dir: string, private readonly o: ChatOutboxOptions) {
    this.maxPosts = o.maxPosts ?? CHAT_OUTBOX_MAX_POSTS;
    this.maxBytes = o.maxBytes ?? CHAT_OUTBOX_MAX_BYTES;
    this.logger = o.logger ?? nullLogger;
    this.path = join(dir, CHAT_OUTBOX_JOURNAL);
  }

  /** Creates the directory (0700) and takes in the posts earlier runs left, in their order. */
  static async open(dir: string, options: ChatOutboxOptions = {}): Promise<ChatOutbox> {
    const outbox = new ChatOutbox(dir, options);
    await ensurePrivateDir(dir);
    await outbox.load();
    return outbox;
  }

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /** Every pending post, oldest first. */
  list(): OutboxEntry[] {
    return [...this.entries.values()];
  }

  /** Takes a post in memory; CHAT-STATE-706 when the outbox holds the most it keeps. */
  add(post: OutboxPost): OutboxEntry {
    const bytes = sizeOf(post);
    if (this.entries.size >= this.maxPosts || this.totalBytes + bytes > this.maxBytes) {
      throw new ConclaveError('CHAT-STATE-706', {
        detail: `${this.entries.size} posts, ${this.totalBytes} bytes pending (at most ${this.maxPosts} posts, ${this.maxBytes} bytes)`,
        data: { room: post.room },
      });
    }
    const entry: Entry = { n: this.nextN++, post, bytes, durable: false };
    this.entries.set(entry.n, entry);
    this.totalBytes += bytes;
    return entry;
  }

  /**
   * Resolves once every given post still pending is on disk (fsync'd); rejects with
   * CHAT-STATE-705 when the write fails, the posts then staying pending in memory.
   */
  async persist(entries: readonly OutboxEntry[]): Promise<void> {
    if (this.closed) throw new ConclaveError('CHAT-STATE-705', { detail: `${this.path}: the outbox is closed` });
    const waits: Array<Promise<void>> = [];
    let queued = false;
    for (const given of entries) {
      const entry = this.entries.get(given.n);
      if (!entry || entry.durable) continue;
      if (!entry.writing) {
        const writing = new Promise<void>((resolve, reject) => {
          this.queue.push({ line: JSON.stringify({ n: entry.n, ...entry.post }), entry, waiter: { resolve, reject } });
        });
        entry.writing = writing;
        // Cleared when settled, so that a failed write can be tried again.
        writing.then(() => undefined, () => undefined).finally(() => {
          if (entry.writing === writing) delete entry.writing;
        });
        queued = true;
      }
      waits.push(entry.writing);
    }
    if (queued) this.schedule();
    await Promise.all(waits);
  }

  /** The orchestrator answered the post: it leaves the outbox (and, if on disk, the journal). */
  remove(given: OutboxEntry): void {
    const entry = this.entries.get(given.n);
    if (!entry) return;
    this.entries.delete(entry.n);
    this.totalBytes -= entry.bytes;
    if (!entry.durable && !entry.writing) return;
    // Not waited for: a removal lost in a crash only sends the post again, and the orchestrator
    // answers a known client_msg_id with its first seq.
    this.queue.push({ line: JSON.stringify({ done: entry.n }) });
    this.doneRecords += 1;
    this.schedule();
  }

  /** Writes what is queued, compacts the journal, and closes it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writing;
    if (this.queue.length > 0 || this.doneRecords > 0) {
      this.needsRewrite = true;
      this.schedule();
      await this.writing?.catch(() => undefined);
    }
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
  }

  private schedule(): void {
    // drain() answers every write's waiter itself; a throw past it would be a bug, logged, never unhandled.
    this.writing ??= this.drain().catch((err: unknown) => this.logger.failure(err, { section: 'STATE' })).finally(() => {
      this.writing = undefined;
      if (this.queue.length > 0) this.schedule();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 || this.needsRewrite) {
      const batch = this.queue;
      this.queue = [];
      const compact = this.needsRewrite || (this.doneRecords >= COMPACT_AFTER_DONE && this.doneRecords > this.entries.size);
      try {
        if (compact) await this.rewrite(batch);
        else await this.append(batch);
      } catch (err) {
        this.needsRewrite = !compact || this.needsRewrite;
        const failure = new ConclaveError('CHAT-STATE-705', { detail: `${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, cause: err });
        // A caller waiting for the write reports it; a compaction or removal nobody waits for is logged here.
        if (batch.some((w) => w.waiter)) for (const write of batch) write.waiter?.reject(failure);
        else this.logger.failure(failure, {}, 'warn');
        // A rewrite that failed is tried again with the next post to persist, not in a loop.
        if (compact) return;
        continue;
      }
      for (const write of batch) {
        if (write.entry) write.entry.durable = true;
        write.waiter?.resolve();
      }
    }
  }

  private async append(batch: readonly PendingWrite[]): Promise<void> {
    // The file exists durably: a rewrite (at open, or after a failure) always comes first.
    this.handle ??= await (this.o.fs?.open ?? open)(this.path, 'a', 0o600);
    await this.handle.write(batch.map((w) => `${w.line}\n`).join(''));
    // Removals alone need no sync: losing one costs a duplicate send, never a post.
    if (batch.some((w) => w.waiter)) await this.handle.datasync();
  }

  /** The journal replaced by the pending posts that are on disk plus `batch`'s: whole, or not at all. */
  private async rewrite(batch: readonly PendingWrite[]): Promise<void> {
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    const adding = new Set(batch.flatMap((w) => (w.entry ? [w.entry.n] : [])));
    const lines = [...this.entries.values()]
      .filter((e) => e.durable || adding.has(e.n))
      .map((e) => `${JSON.stringify({ n: e.n, ...e.post })}\n`);
    await writeFileDurable(this.path, lines.join(''), { mode: 0o600, ...(this.o.fs ? { fs: this.o.fs } : {}) });
    this.needsRewrite = false;
    this.doneRecords = 0;
  }

  private async load(): Promise<void> {
    let text = '';
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      // None yet: the rewrite below creates it (durably: appends never create the file).
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConclaveError('CHAT-STATE-705', { detail: `${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, cause: err });
    }
    const lines = text.split('\n');
    // The text after the last newline is a line whose write a crash cut short: never acknowledged.
    const torn = lines.pop();
    if (torn) this.logger.debug('STATE', 'chat outbox journal ends in a torn line; skipped', { bytes: torn.length });
    let unreadable = 0;
    for (const line of lines) {
      if (line === '') continue;
      const record = parseRecord(line);
      if (!record) {
        unreadable += 1;
        continue;
      }
      if ('done' in record) {
        const entry = this.entries.get(record.done);
        if (entry) {
          this.entries.delete(entry.n);
          this.totalBytes -= entry.bytes;
        }
        continue;
      }
      const { n, ...post } = record;
      const bytes = sizeOf(post);
      this.entries.set(n, { n, post, bytes, durable: true });
      this.totalBytes += bytes;
      this.nextN = Math.max(this.nextN, n + 1);
    }
    if (unreadable > 0) this.logger.warn('STATE', 'chat outbox journal lines unreadable; skipped', { count: unreadable, path: this.path });
    // Journal order is acceptance order, but n decides (a rewrite keeps it).
    const sorted = [...this.entries.values()].sort((a, b) => a.n - b.n);
    this.entries.clear();
    for (const entry of sorted) this.entries.set(entry.n, entry);
    this.needsRewrite = true;
    this.schedule();
    await this.writing;
  }
}

function sizeOf(post: Omit<OutboxPost, 'atMs'>): number {
  return Buffer.byteLength(post.text) + post.room.length + post.clientMsgId.length + (post.resource?.length ?? 0);
}

type JournalRecord = ({ n: number } & OutboxPost) | { done: number };

function parseRecord(line: string): JournalRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== 'object') return undefined;
  const r = value as Record<string, unknown>;
  if (Number.isSafeInteger(r['done'])) return { done: r['done'] as number };
  if (!Number.isSafeInteger(r['n']) || typeof r['room'] !== 'string' || typeof r['clientMsgId'] !== 'string' || typeof r['text'] !== 'string') return undefined;
  return {
    n: r['n'] as number,
    room: r['room'],
    clientMsgId: r['clientMsgId'],
    text: r['text'],
    atMs: typeof r['atMs'] === 'number' ? r['atMs'] : 0,
    ...(typeof r['resource'] === 'string' && r['resource'] ? { resource: r['resource'] } : {}),
    ...(typeof r['fence'] === 'number' && r['fence'] > 0 ? { fence: r['fence'] } : {}),
  };
}
