import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureLogger, isConclaveError } from '@conclave/common';
import { ModelStore } from './model-store.js';

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const bytesOf = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(isConclaveError(err) ? err.code : err).toBe(code);
}

describe('ModelStore', () => {
  let dir: string;
  let store: ModelStore;
  let log: ReturnType<typeof captureLogger>;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-models-'));
    log = captureLogger('NODE');
    store = new ModelStore({ dir, logger: log.logger });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stores a model written in chunks once its sha256 matches', async () => {
    const model = bytesOf(10_000);
    const digest = sha(model);
    expect(store.has(digest)).toBe(false);
    const writer = await store.beginWrite(digest, model.length);
    for (let offset = 0; offset < model.length; offset += 4096) {
      await writer.write(offset, model.subarray(offset, offset + 4096));
    }
    const path = await writer.finish();
    expect(path).toBe(store.pathOf(digest));
    expect(store.has(digest)).toBe(true);
    expect(store.list()).toEqual([digest]);
    expect(await readdir(dir)).toEqual([`${digest}.onnx`]);
  });

  it('refuses a file whose sha256 does not match and keeps nothing of it', async () => {
    const model = bytesOf(5000);
    const claimed = sha(bytesOf(5000, 2));
    const writer = await store.beginWrite(claimed, model.length);
    await writer.write(0, model);
    await expectCode(writer.finish(), 'NODE-LOAD-104');
    expect(store.has(claimed)).toBe(false);
    expect(await readdir(dir)).toEqual([]);
    expect(await store.resumeOffset(claimed)).toBe(0);
  });

  it('rejects a chunk that does not start where the file ends', async () => {
    const model = bytesOf(100);
    const writer = await store.beginWrite(sha(model), model.length);
    await writer.write(0, model.subarray(0, 50));
    await expectCode(writer.write(60, model.subarray(60)), 'NODE-LOAD-105');
    await expectCode(writer.write(0, model.subarray(0, 50)), 'NODE-LOAD-105');
    await writer.write(50, model.subarray(50));
    await writer.finish();
    expect(store.has(sha(model))).toBe(true);
  });

  it('rejects bytes past the declared size, and a short file at finish', async () => {
    const model = bytesOf(100);
    const digest = sha(model);
    const writer = await store.beginWrite(digest, 60);
    await expectCode(writer.write(0, model), 'NODE-LOAD-106');
    await writer.write(0, model.subarray(0, 30));
    await expectCode(writer.finish(), 'NODE-LOAD-106');
    expect(await readdir(dir)).toEqual([]);
  });

  it('resumes an interrupted download from its .part', async () => {
    const model = bytesOf(8192, 5);
    const digest = sha(model);
    const first = await store.beginWrite(digest, model.length);
    await first.write(0, model.subarray(0, 3000));
    await first.abort();
    expect(await store.resumeOffset(digest)).toBe(3000);
    expect(store.has(digest)).toBe(false);

    const second = await store.beginWrite(digest, model.length);
    expect(second.offset).toBe(3000);
    await second.write(3000, model.subarray(3000));
    await second.finish();
    expect(store.has(digest)).toBe(true);
  });

  it('allows one writer per digest at a time', async () => {
    const digest = sha(bytesOf(10));
    const writer = await store.beginWrite(digest, 10);
    await expectCode(store.beginWrite(digest, 10), 'NODE-LOAD-109');
    await writer.discard();
    const again = await store.beginWrite(digest, 10);
    expect(again.offset).toBe(0);
    await again.discard();
  });

  it('refuses a digest that is not 64 hex digits, so it cannot name another path', async () => {
    await expectCode(store.beginWrite('../../etc/passwd', 10), 'NODE-LOAD-108');
    expect(() => store.pathOf('ABC')).toThrow(/sha256/);
  });

  it('verifies stored files at startup, removing and reporting a tampered one', async () => {
    const good = bytesOf(300, 1);
    const bad = bytesOf(300, 2);
    const badDigest = sha(bad);
    await writeFile(join(dir, `${sha(good)}.onnx`), good);
    // Same name, different bytes: what corruption or tampering on the SSD looks like.
    const tampered = Uint8Array.from(bad);
    tampered[7] = tampered[7]! ^ 0x01;
    await writeFile(join(dir, `${badDigest}.onnx`), tampered);
    await writeFile(join(dir, `${badDigest}.onnx.part`), bad.subarray(0, 10));
    await writeFile(join(dir, 'README.txt'), 'not a model');

    const report = await store.verifyAll();
    expect(report).toEqual({ verified: [sha(good)], removed: [badDigest] });
    expect(store.list()).toEqual([sha(good)]);
    expect(store.has(badDigest)).toBe(false);
    expect((await readdir(dir)).sort()).toEqual([`${badDigest}.onnx.part`, `${sha(good)}.onnx`, 'README.txt'].sort());
    expect(log.lines.some((line) => line.includes('NODE-LOAD-107') && line.includes(badDigest))).toBe(true);
  });

  it('keeps its directory 0700: creates it so and tightens an existing 0755 one', async () => {
    const fresh = new ModelStore({ dir: join(dir, 'models'), logger: log.logger });
    await fresh.verifyAll();
    expect((await stat(join(dir, 'models'))).mode & 0o777).toBe(0o700);
    await chmod(join(dir, 'models'), 0o755);
    await new ModelStore({ dir: join(dir, 'models'), logger: log.logger }).verifyAll();
    expect((await stat(join(dir, 'models'))).mode & 0o777).toBe(0o700);
  });
});
