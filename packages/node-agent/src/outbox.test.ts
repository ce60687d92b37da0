import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ACK_GRACE_MS, Outbox } from './outbox.js';

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
});
