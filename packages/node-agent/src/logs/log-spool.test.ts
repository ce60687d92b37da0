import { appendFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '@conclave/testing';
import { LogSpool } from './log-spool.js';
import type { SpoolEntry } from './spool-entry.js';

const entry = (seq: number, text = 'x'.repeat(100)): SpoolEntry => ({
  record: { seq, timeMs: 1_000 + seq, level: 'info', prefix: 'NODE', section: 'JOB', code: '', message: text, fieldsJson: '{}' },
});
const seqsOf = (entries: SpoolEntry[]) => entries.map((e) => ('record' in e ? e.record.seq : `gap ${e.gap.fromSeq}-${e.gap.toSeq}`));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => entry(from + i));

describe('LogSpool', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let spool: LogSpool | undefined;
  const segments = async () => (await readdir(dir.path)).filter((n) => n.endsWith('.jsonl')).sort();

  beforeEach(async () => {
    dir = await tempDir('conclave-spool-');
  });
  afterEach(async () => {
    await spool?.close();
    spool = undefined;
    await dir.remove();
  });

  it('keeps segments of at most segmentMaxBytes, named by first seq, 0600 in a 0700 dir, read back in order', async () => {
    spool = await LogSpool.open(dir.path, { maxBytes: 1_000_000, segmentMaxBytes: 4_096 });
    expect((await spool.append(range(1, 100))).written).toBe(100);
    const names = await segments();
    expect(names.length).toBeGreaterThan(2);
    expect(names[0]).toBe('00000000000000000001.jsonl');
    for (const name of names) {
      const s = await stat(join(dir.path, name));
      expect(s.size).toBeLessThanOrEqual(4_096);
      expect(s.mode & 0o777).toBe(0o600);
    }
    expect((await stat(dir.path)).mode & 0o777).toBe(0o700);
    expect(spool.lastSeq).toBe(100);
    expect(seqsOf(await spool.read(30, 1_000_000))).toEqual(range(1, 30).map((e) => seqsOf([e])[0]));
    expect(seqsOf(await spool.read(1_000, 1_000_000))).toEqual(range(31, 100).map((e) => seqsOf([e])[0]));
    expect(await spool.read(10, 1_000_000)).toEqual([]);
    // A batch's byte limit (177 bytes encoded each, at most): always one entry, then as many as fit.
    await spool.append(range(101, 110));
    expect(seqsOf(await spool.read(100, 10))).toEqual([101]);
    expect(seqsOf(await spool.read(100, 400))).toEqual([102, 103]);
  });

  it('past maxBytes drops the oldest segment and reports the records it had not sent', async () => {
    spool = await LogSpool.open(dir.path, { maxBytes: 16_384, segmentMaxBytes: 4_096 });
    await spool.append(range(1, 20));
    // The first 5 went out (in flight): a drop of their segment reports only the rest.
    expect(seqsOf(await spool.read(5, 1_000_000))).toEqual([1, 2, 3, 4, 5]);
    const outcome = await spool.append(range(21, 200));
    expect(spool.bytes).toBeLessThanOrEqual(16_384);
    const [first, ...rest] = outcome.drops;
    expect(first).toMatchObject({ fromSeq: 6 });
    // Consecutive, and together they account for every record no longer in the spool.
    let expectedFrom = first!.fromSeq;
    for (const drop of outcome.drops) {
      expect(drop.fromSeq).toBe(expectedFrom);
      expect(drop.count).toBe(drop.toSeq - drop.fromSeq + 1);
      expectedFrom = drop.toSeq + 1;
    }
    expect(rest.length).toBeGreaterThan(0);
    const left = seqsOf(await spool.read(1_000, 10_000_000));
    expect(left[0]).toBe(expectedFrom);
    expect(left.at(-1)).toBe(200);
    expect(left.length).toBe(200 - expectedFrom + 1);
  });

  it('an acknowledgement removes the segments wholly below it, but never the newest', async () => {
    spool = await LogSpool.open(dir.path, { maxBytes: 1_000_000, segmentMaxBytes: 4_096 });
    await spool.append(range(1, 100));
    const before = await segments();
    await spool.read(1_000, 1_000_000);
    await spool.release(40);
    const after = await segments();
    expect(after.length).toBeLessThan(before.length);
    expect(Number(after[0]!.slice(0, 20))).toBeLessThanOrEqual(41);
    await spool.release(100);
    expect(await segments()).toEqual([before.at(-1)]);
    expect(spool.lastSeq).toBe(100);
  });

  it('after a restart: the seqs on disk, a torn last line cut off, the acknowledged ones passed over', async () => {
    spool = await LogSpool.open(dir.path, { maxBytes: 1_000_000, segmentMaxBytes: 4_096 });
    await spool.append(range(1, 50));
    await spool.close();
    const newest = (await segments()).at(-1)!;
    await appendFile(join(dir.path, newest), '{"r":{"seq":51,"timeMs":1');
    spool = await LogSpool.open(dir.path, { maxBytes: 1_000_000, segmentMaxBytes: 4_096 });
    expect(spool.lastSeq).toBe(50);
    await spool.append(range(51, 52));
    await spool.release(45);
    expect(seqsOf(await spool.read(1_000, 1_000_000))).toEqual([46, 47, 48, 49, 50, 51, 52]);
  });
});
