import { appendFile, mkdir, mkdtemp, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureLogger, type DurableFs } from '@conclave/common';
import { CHAT_OUTBOX_JOURNAL, ChatOutbox, type OutboxPost } from './chat-outbox.js';

const post = (i: number, room = 'fleet'): OutboxPost => ({ room, clientMsgId: `c${i}`, text: `message ${i}`, atMs: 1000 + i });

describe('ChatOutbox', () => {
  let dir: string;
  const journal = (): string => join(dir, CHAT_OUTBOX_JOURNAL);
  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'chat-outbox-')), 'chat-outbox');
  });
  afterEach(() => rm(join(dir, '..'), { recursive: true, force: true }));

  it('keeps posts in memory until asked to persist them: a post answered in time never touches the disk', async () => {
    const outbox = await ChatOutbox.open(dir);
    const entry = outbox.add(post(1));
    expect(outbox.size).toBe(1);
    outbox.remove(entry);
    await outbox.close();
    expect(await readFile(journal(), 'utf8')).toBe('');
  });

  it('finds every persisted post again after a reopen (a crash: never closed), in acceptance order', async () => {
    const outbox = await ChatOutbox.open(dir);
    const entries = [1, 2, 3, 4].map((i) => outbox.add(post(i, i % 2 ? 'fleet' : 'ops')));
    // Persisted in pieces and out of order: the order is acceptance, not the writes'.
    await outbox.persist([entries[2]!]);
    await outbox.persist([entries[0]!, entries[1]!, entries[3]!]);
    outbox.remove(entries[1]!);
    // No close(): what a kill -9 leaves. The removal may or may not have reached the file.
    const again = await ChatOutbox.open(dir);
    const found = again.list().map((e) => e.post.clientMsgId);
    expect(found.filter((id) => id !== 'c2')).toEqual(['c1', 'c3', 'c4']);
    expect(again.list()[0]!.post).toEqual(post(1));
    expect(again.list().every((e) => e.durable)).toBe(true);
    // New posts come after the old ones.
    expect(again.add(post(5)).n).toBeGreaterThan(Math.max(...again.list().map((e) => e.n).slice(0, -1)));
    await again.close();
    await outbox.close();
  });

  it('forgets an answered post for good: removed, closed, reopened, it is not sent again', async () => {
    const outbox = await ChatOutbox.open(dir);
    const a = outbox.add(post(1));
    const b = outbox.add(post(2));
    await outbox.persist([a, b]);
    outbox.remove(a);
    await outbox.close();
    const again = await ChatOutbox.open(dir);
    expect(again.list().map((e) => e.post.clientMsgId)).toEqual(['c2']);
    // Opening compacted the journal: only the pending post is left in it.
    expect((await readFile(journal(), 'utf8')).trim().split('\n')).toHaveLength(1);
    await again.close();
  });

  it('skips the torn last line a crash leaves, and an unreadable line, and keeps the rest', async () => {
    const outbox = await ChatOutbox.open(dir);
    await outbox.persist([outbox.add(post(1)), outbox.add(post(2))]);
    await outbox.close();
    await appendFile(journal(), 'garbage that is not json\n{"n":9,"room":"fleet","clientMsgId":"c9","te');
    const logs = captureLogger('CHAT');
    const again = await ChatOutbox.open(dir, { logger: logs.logger });
    expect(again.list().map((e) => e.post.clientMsgId)).toEqual(['c1', 'c2']);
    expect(logs.lines.some((l) => l.includes('unreadable'))).toBe(true);
    // The rewrite at open left a clean file: appending goes on from a whole line.
    await again.persist([again.add(post(3))]);
    const third = await ChatOutbox.open(dir);
    expect(third.list().map((e) => e.post.clientMsgId)).toEqual(['c1', 'c2', 'c3']);
    await third.close();
    await again.close();
  });

  it('group-commits: many posts persisted at once cost a few syncs, not one each', async () => {
    let syncs = 0;
    const fs: DurableFs = {
      open: (async (path: string, flags?: string, mode?: number) => {
        const handle = await open(path, flags, mode);
        const datasync = handle.datasync.bind(handle);
        return Object.assign(handle, { datasync: async () => { syncs += 1; await datasync(); } });
      }) as DurableFs['open'],
      rename,
      rm,
    };
    const outbox = await ChatOutbox.open(dir, { fs });
    const entries = Array.from({ length: 200 }, (_, i) => outbox.add(post(i)));
    await Promise.all(entries.map((e) => outbox.persist([e])));
    expect((await readFile(journal(), 'utf8')).trim().split('\n')).toHaveLength(200);
    expect(syncs).toBeGreaterThan(0);
    expect(syncs).toBeLessThanOrEqual(3);
    await outbox.close();
  });

  it('is bounded: past the posts or bytes it keeps, CHAT-STATE-706', async () => {
    const byCount = await ChatOutbox.open(dir, { maxPosts: 3 });
    for (let i = 0; i < 3; i += 1) byCount.add(post(i));
    expect(() => byCount.add(post(3))).toThrow(expect.objectContaining({ code: 'CHAT-STATE-706' }));
    byCount.remove(byCount.list()[0]!);
    expect(() => byCount.add(post(4))).not.toThrow();
    await byCount.close();
    const byBytes = await ChatOutbox.open(join(dir, 'b'), { maxBytes: 100 });
    byBytes.add({ ...post(1), text: 'x'.repeat(80) });
    expect(() => byBytes.add({ ...post(2), text: 'y'.repeat(30) })).toThrow(expect.objectContaining({ code: 'CHAT-STATE-706' }));
    await byBytes.close();
  });

  it('a failed write rejects with CHAT-STATE-705 and keeps the post in memory; the next write starts from a whole file', async () => {
    let failOpen = false;
    const fs: DurableFs = {
      open: (async (path: string, flags?: string, mode?: number) => {
        if (failOpen) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        return open(path, flags, mode);
      }) as DurableFs['open'],
      rename,
      rm,
    };
    const outbox = await ChatOutbox.open(dir, { fs });
    const kept = outbox.add(post(1));
    await outbox.persist([kept]);
    await outbox.close();
    const again = await ChatOutbox.open(dir, { fs });
    failOpen = true;
    const lost = again.add(post(2));
    await expect(again.persist([lost])).rejects.toMatchObject({ code: 'CHAT-STATE-705' });
    expect(again.list().map((e) => [e.post.clientMsgId, e.durable])).toEqual([['c1', true], ['c2', false]]);
    failOpen = false;
    await again.persist([lost]);
    expect(again.list().every((e) => e.durable)).toBe(true);
    const third = await ChatOutbox.open(dir);
    expect(third.list().map((e) => e.post.clientMsgId)).toEqual(['c1', 'c2']);
    await third.close();
    await again.close();
  });

  it('is private: the directory 0700, the journal 0600', async () => {
    const outbox = await ChatOutbox.open(dir);
    await outbox.persist([outbox.add(post(1))]);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(journal())).mode & 0o777).toBe(0o600);
    await outbox.close();
  });

  it('refuses a journal it cannot read as CHAT-STATE-705 instead of starting empty', async () => {
    // A directory where the file should be: EISDIR.
    await mkdir(journal(), { recursive: true });
    await expect(ChatOutbox.open(dir)).rejects.toMatchObject({ code: 'CHAT-STATE-705' });
  });
});
