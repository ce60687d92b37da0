import { chmod, mkdtemp, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureLogger, type DurableFs } from '@conclave/common';
import type { JobResult } from '@conclave/protocol';
import { ACK_GRACE_MS, Outbox, RESEND_INTERVAL_MS } from './outbox.js';

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Outbox', () => {
  let dir: string;
  let outbox: Outbox;
  const files = async () => (await readdir(dir)).filter((f) => f.endsWith('.json'));
  const result = (jobId: string) => ({ jobId, attempt: 1, outputs: { tensors: { y: { dtype: 'float32', dims: [1], raw: Buffer.from([0, 0, 128, 63]) } } } });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outbox-'));
    outbox = new Outbox(dir);
    await outbox.open();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('keeps a sent result in memory and never writes it when the ack comes in time', async () => {
    await outbox.put(result('a'), true);
    expect(await files()).toEqual([]);
    expect((await outbox.pending()).map((r) => r.jobId)).toEqual(['a']);
    await outbox.ack('a', 1);
    expect(await outbox.pending()).toEqual([]);
  });

  it('writes a result that could not be sent at once, and reads it back exactly', async () => {
    await outbox.put(result('b'), false);
    expect(await files()).toEqual(['b.1.json']);
    const again = await new Outbox(dir).pending();
    expect(again[0]?.outputs?.tensors?.y?.raw).toEqual(Buffer.from([0, 0, 128, 63]));
    await outbox.ack('b', 1);
    expect(await files()).toEqual([]);
  });

  it('writes a sent result whose ack is late, and every unacknowledged one when the session drops', async () => {
    await outbox.put(result('late'), true);
    await new Promise((resolve) => setTimeout(resolve, ACK_GRACE_MS + 200));
    expect(await files()).toEqual(['late.1.json']);
    await outbox.put(result('c'), true);
    await outbox.persistAll();
    expect((await files()).sort()).toEqual(['c.1.json', 'late.1.json']);
    expect((await new Outbox(dir).pending()).map((r) => r.jobId).sort()).toEqual(['c', 'late']);
  });

  it('writes each result durably: the file and then its directory are fsync\'d around the rename', async () => {
    const steps: string[] = [];
    const fs: DurableFs = {
      open: (async (path: string, flags?: string, mode?: number) => {
        const handle = await open(path, flags, mode);
        const sync = handle.sync.bind(handle);
        return Object.assign(handle, { sync: async () => { steps.push(`sync ${path === dir ? 'dir' : 'file'}`); await sync(); } });
      }) as DurableFs['open'],
      rename: async (from, to) => { steps.push('rename'); await rename(from, to); },
      rm,
    };
    const durable = new Outbox(dir, { fs });
    await durable.put(result('d'), false);
    expect(steps).toEqual(['sync file', 'rename', 'sync dir']);
    expect(await readdir(dir)).toEqual(['d.1.json']);
    expect((await stat(join(dir, 'd.1.json'))).mode & 0o777).toBe(0o600);
  });

  it('creates its directory 0700 and tightens an existing one', async () => {
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    await chmod(dir, 0o755);
    await new Outbox(dir).open();
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
  });

  it('while connected, resends every result unacknowledged for longer than the ack grace until it is acked', async () => {
    expect(RESEND_INTERVAL_MS).toBe(5_000);
    const ackGraceMs = 100;
    const sent: string[] = [];
    let online = true;
    // A fake link: what send() would put on the session, and whether the session was up.
    const link = { send: (r: JobResult) => { if (online) sent.push(`${r.jobId}`); return online; } };
    const box = new Outbox(dir, { ackGraceMs });
    await box.open();
    await box.put(result('kept'), true);
    await box.put(result('acked'), true);
    await box.ack('acked', 1);
    // An earlier run's result, on disk only: due at once.
    await new Outbox(dir).put(result('old'), false);
    await box.open();
    const stop = box.startResending(link.send, 40);
    await wait(20);
    expect(sent).toEqual([]);
    await wait(60);
    // 'old' at the first tick; 'kept' only once its grace has passed.
    expect(sent).toContain('old');
    await wait(ackGraceMs + 100);
    expect(sent).toContain('kept');
    expect(sent).not.toContain('acked');
    // Resent at most once per grace period, not at every tick.
    const kept = sent.filter((j) => j === 'kept').length;
    expect(kept).toBeLessThanOrEqual(2);
    await box.ack('kept', 1);
    await box.ack('old', 1);
    sent.length = 0;
    await wait(ackGraceMs + 100);
    expect(sent).toEqual([]);
    stop();
    // Offline sends do not count as sent: due again at the next tick after reconnect.
    await box.put(result('late'), false);
    online = false;
    const stop2 = box.startResending(link.send, 20);
    await wait(60);
    online = true;
    await wait(60);
    stop2();
    expect(sent).toContain('late');
    expect(await files()).toEqual(['late.1.json']);
  });

  describe('when the disk refuses a write (full)', () => {
    let full = true;
    /** node:fs, except that opening a file for writing fails with ENOSPC while `full`. */
    const fs: DurableFs = {
      open: (async (path: string, flags?: string, mode?: number) => {
        if (full && flags !== undefined && flags !== 'r') throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        return open(path, flags, mode);
      }) as DurableFs['open'],
      rename,
      rm,
    };
    beforeEach(() => {
      full = true;
    });

    it('keeps a result whose grace-timer write failed in memory, says NODE-STATE-708, and writes it at persistAll once there is room', async () => {
      const { logger, lines } = captureLogger('NODE');
      const box = new Outbox(dir, { ackGraceMs: 20, fs, logger });
      await box.put(result('unwritten'), true);
      await wait(120);
      expect(lines).toEqual([expect.stringMatching(/ ERROR NODE-STATE-708 outbox could not write an unacknowledged result jobId=unwritten attempt=1 .*ENOSPC/)]);
      expect(await files()).toEqual([]);
      expect((await box.pending()).map((r) => r.jobId)).toEqual(['unwritten']);
      full = false;
      await box.persistAll();
      expect(await files()).toEqual(['unwritten.1.json']);
      // Read back by the next run: not lost at a restart.
      expect((await new Outbox(dir).pending()).map((r) => r.jobId)).toEqual(['unwritten']);
      expect((await box.pending()).map((r) => r.jobId)).toEqual(['unwritten']);
    });

    it('put() of an unsent result does not reject, logs NODE-STATE-708 and keeps it; persistAll() rejects with it', async () => {
      const { logger, lines } = captureLogger('NODE');
      const box = new Outbox(dir, { fs, logger });
      await box.put(result('offline'), false);
      expect(lines).toEqual([expect.stringMatching(/ ERROR NODE-STATE-708 .*jobId=offline/)]);
      expect((await box.pending()).map((r) => r.jobId)).toEqual(['offline']);
      await expect(box.persistAll()).rejects.toMatchObject({ code: 'NODE-STATE-708', data: { jobId: 'offline', attempt: 1 } });
      expect((await box.pending()).map((r) => r.jobId)).toEqual(['offline']);
      const sent: string[] = [];
      expect(box.resendAll((r) => { sent.push(r.jobId ?? ''); return true; })).toBe(1);
      expect(sent).toEqual(['offline']);
    });
  });

  it('ack() of a job id that is no file name rejects with NODE-STATE-709, and forgets it', async () => {
    await expect(outbox.ack('../x', 1)).rejects.toMatchObject({ code: 'NODE-STATE-709', data: { jobId: '../x', attempt: 1 } });
    await outbox.put(result('a'), true);
    await outbox.ack('a', 1);
    expect(await outbox.pending()).toEqual([]);
  });

  it('pending() lists a result being written once, in memory and on disk alike', async () => {
    await outbox.put(result('both'), true);
    const written = outbox.persistAll();
    expect((await outbox.pending()).map((r) => r.jobId)).toEqual(['both']);
    await written;
    expect((await outbox.pending()).map((r) => r.jobId)).toEqual(['both']);
  });
});
