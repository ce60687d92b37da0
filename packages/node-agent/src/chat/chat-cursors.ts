import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConclaveError, ensurePrivateDir, nullLogger, writeFileDurable, type Logger } from '@conclave/common';

/** Where a member is in a room's log: every message up to `seq` of `epoch` has been applied. */
export interface ChatCursor {
  epoch: string;
  seq: number;
}

/** Cursor writes are coalesced: at most one per this interval (and one on close). */
export const CURSOR_FLUSH_INTERVAL_MS = 100;

export interface ChatCursorsOptions {
  /** @default CURSOR_FLUSH_INTERVAL_MS */
  flushIntervalMs?: number;
  /** Where a failed write is reported. @default nullLogger */
  logger?: Logger;
}

interface CursorFile {
  version: 1;
  rooms: Record<string, ChatCursor>;
}

/**
 * The rooms the node follows and its cursor in each, in `<data-dir>/chat/cursors.json`. Written
 * after the messages were applied, at most every `flushIntervalMs` (a crash costs at most the
 * messages of that interval, delivered again on resuming) and whole (writeFileDurable).
 */
export class ChatCursors {
  private readonly rooms = new Map<string, ChatCursor>();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private dirty = false;
  private closed = false;
  private readonly flushIntervalMs: number;
  private readonly logger: Logger;

  private constructor(private readonly path: string, o: ChatCursorsOptions) {
    this.flushIntervalMs = o.flushIntervalMs ?? CURSOR_FLUSH_INTERVAL_MS;
    this.logger = o.logger ?? nullLogger;
  }

  /** Reads the file (none yet: no rooms); its directory is made 0700. */
  static async open(path: string, options: ChatCursorsOptions = {}): Promise<ChatCursors> {
    const cursors = new ChatCursors(path, options);
    await ensurePrivateDir(dirname(path));
    await cursors.load();
    return cursors;
  }

  /** The rooms followed, in the order they were first followed. */
  list(): string[] {
    return [...this.rooms.keys()];
  }

  has(room: string): boolean {
    return this.rooms.has(room);
  }

  get(room: string): ChatCursor | undefined {
    const cursor = this.rooms.get(room);
    return cursor ? { ...cursor } : undefined;
  }

  /** Records the applied position (a room not followed yet becomes followed); written soon. */
  set(room: string, cursor: ChatCursor): void {
    const known = this.rooms.get(room);
    if (known && known.epoch === cursor.epoch && known.seq === cursor.seq) return;
    this.rooms.set(room, { epoch: cursor.epoch, seq: cursor.seq });
    this.changed();
  }

  /** The room is no longer followed. */
  delete(room: string): void {
    if (this.rooms.delete(room)) this.changed();
  }

  /** Writes now whatever changed (and waits for a write under way). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.writing || this.dirty) {
      if (this.writing) {
        await this.writing;
        continue;
      }
      this.writing = this.write().finally(() => {
        this.writing = undefined;
      });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
  }

  private changed(): void {
    this.dirty = true;
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.flushIntervalMs);
    this.timer.unref();
  }

  private async write(): Promise<void> {
    this.dirty = false;
    const file: CursorFile = { version: 1, rooms: Object.fromEntries(this.rooms) };
    try {
      await writeFileDurable(this.path, `${JSON.stringify(file)}\n`, { mode: 0o600 });
    } catch (err) {
      // Kept in memory and written with the next change: a cursor behind only repeats messages.
      this.logger.failure(new ConclaveError('CHAT-STATE-707', { detail: `cursors ${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, cause: err }), {}, 'warn');
    }
  }

  private async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new ConclaveError('CHAT-STATE-707', { detail: `cursors ${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const rooms = (parsed as Partial<CursorFile> | undefined)?.rooms;
    if (!rooms || typeof rooms !== 'object') {
      // writeFileDurable never leaves half a file: this one was edited by hand. Resuming from
      // nothing only means a resync from the orchestrator.
      this.logger.warn('STATE', 'chat cursors file unreadable; starting without cursors', { path: this.path });
      return;
    }
    for (const [room, cursor] of Object.entries(rooms)) {
      if (cursor && typeof cursor.epoch === 'string' && Number.isSafeInteger(cursor.seq) && cursor.seq >= 0) {
        this.rooms.set(room, { epoch: cursor.epoch, seq: cursor.seq });
      }
    }
  }
}
