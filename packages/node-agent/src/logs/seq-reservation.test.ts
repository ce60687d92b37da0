import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '@conclave/testing';
import { SEQ_STATE_FILE, SeqReservation, resumePoint } from './seq-reservation.js';

describe('resumePoint', () => {
  it('goes on after the last seq in the spool, saying nothing skipped', () => {
    expect(resumePoint(42, { reserved: 10_000, lastUsed: 30, ackedUpTo: 0 })).toEqual({ nextSeq: 43 });
  });

  it('without a spool, starts above the reserved block and says the seqs after the last one used were skipped', () => {
    expect(resumePoint(0, { reserved: 10_000, lastUsed: 42, ackedUpTo: 42 })).toEqual({ nextSeq: 10_001, skipped: { fromSeq: 43, toSeq: 10_000 } });
  });

  it('starts at 1 on a first start, and after everything reserved was used skips nothing', () => {
    expect(resumePoint(0, { reserved: 0, lastUsed: 0, ackedUpTo: 0 })).toEqual({ nextSeq: 1 });
    expect(resumePoint(0, { reserved: 10_000, lastUsed: 10_000, ackedUpTo: 0 })).toEqual({ nextSeq: 10_001 });
  });

  it('never goes back below a seq known used, even when the spool lost its newest segment', () => {
    expect(resumePoint(20, { reserved: 10_000, lastUsed: 50, ackedUpTo: 0 })).toEqual({ nextSeq: 10_001, skipped: { fromSeq: 51, toSeq: 10_000 } });
  });
});

describe('SeqReservation', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeEach(async () => {
    dir = await tempDir('conclave-seq-');
  });
  afterEach(async () => {
    await dir.remove();
  });

  it('writes one block ahead on disk, and again only once it is used up', async () => {
    const path = join(dir.path, SEQ_STATE_FILE);
    const reservation = await SeqReservation.open(path, 100);
    await reservation.reserveThrough(1, 0);
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ reserved: 100, lastUsed: 0, ackedUpTo: 0 });
    await reservation.reserveThrough(100, 60);
    expect(JSON.parse(await readFile(path, 'utf8'))).toMatchObject({ reserved: 100 });
    await reservation.reserveThrough(101, 100);
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ reserved: 200, lastUsed: 100, ackedUpTo: 0 });
    await reservation.save(150, 120);
    expect((await SeqReservation.open(path, 100)).state).toEqual({ reserved: 200, lastUsed: 150, ackedUpTo: 120 });
  });
});
