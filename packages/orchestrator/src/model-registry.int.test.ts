// Needs the built package (`pnpm build`): the model inspector's worker runs from dist.
// Model bundles in the registry on a real Redis: stored, listed, served by digest and removed,
// and every bad bundle refused with its code, leaving nothing behind.
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { captureLogger } from '@conclave/common';
import type { HailoManifest__Output, HailoTensorMap__Output } from '@conclave/protocol';
import { affineModel, identityModel, notOnnxBytes, startRedis, type RedisServerHandle } from '@conclave/testing';
import type { BundleFileHeader } from './model-bundle.js';
import { ModelRegistry, toModelInfo, type ModelUpload } from './model-registry.js';
import { redisKeys } from './redis-keys.js';

const model = affineModel({ seed: 3 });
/** x:float32 → y:float32: takes model.onnx's input x; its output y is what the HEF takes. */
const pre = identityModel('float32', ['n']);
/** x → y: takes the HEF's output (x), gives model.onnx's output y; other bytes than pre's. */
const post = identityModel('float32', ['batch', 3]);
const hef8 = Buffer.from('fake hef compiled for hailo8');
const hef8l = Buffer.from('fake hef compiled for hailo8l');

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const map = (name: string, vstream: string): HailoTensorMap__Output => ({ name, vstream, dtype: 'float32', layout: 'NC', qpScale: 0, qpZeroPoint: 0 });
const manifest = (extra: Partial<HailoManifest__Output> = {}): HailoManifest__Output => ({
  hailortVersion: '4.20.0', compilerVersion: '3.29.0', batchSize: 1, toleranceAbs: 0.01, toleranceRel: 0.01,
  inputs: [map('x', 'affine/input_layer1')], outputs: [map('y', 'affine/fc1')], ...extra,
});

/** With pre and post: the HEF takes pre.onnx's output y and gives post.onnx's input x. */
const bundleManifest = manifest({ inputs: [map('y', 'affine/input_layer1')], outputs: [map('x', 'affine/fc1')] });

interface Part {
  role: string;
  chip?: string;
  bytes: Uint8Array;
  size?: number;
  sha256?: string;
}

/** The upload and its stream: model.onnx, then each part, in chunks that straddle the parts' edges. */
function upload(name: string, modelBytes: Uint8Array, parts: Part[], hailo: HailoManifest__Output | null, modelSize = modelBytes.byteLength) {
  const files: BundleFileHeader[] = parts.map((p) => ({ role: p.role, chip: p.chip ?? '', size: p.size ?? p.bytes.byteLength, sha256: p.sha256 ?? '' }));
  const all = Buffer.concat([modelBytes, ...parts.map((p) => p.bytes)]);
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (let offset = 0; offset < all.byteLength; offset += 37) yield all.subarray(offset, offset + 37);
  }
  const header: ModelUpload = { name, size: modelSize, files, hailo };
  return [header, chunks()] as const;
}

let server: RedisServerHandle;
let redis: Redis;
let dataDir: string;
let registry: ModelRegistry;
let db = 0;

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server?.stop();
});
beforeEach(async () => {
  // Each test flushes its database after it: the 16 that Redis has are enough, taken in turn.
  db = (db + 1) % 16;
  redis = new Redis({ host: server.host, port: server.port, db, maxRetriesPerRequest: null });
  dataDir = await mkdtemp(join(tmpdir(), 'conclave-models-'));
  registry = new ModelRegistry(redis, dataDir, captureLogger('ORCH').logger);
});
afterEach(async () => {
  await redis.flushdb();
  await redis.quit();
  await rm(dataDir, { recursive: true, force: true });
});

const stored = async () => (await readdir(join(dataDir, 'models')).catch(() => [] as string[])).sort();

describe('ModelRegistry bundles', () => {
  it('stores a bundle content-addressed, records artifacts and manifest, and serves each file by digest', async () => {
    const record = await registry.add(...upload('det', model.bytes, [
      { role: 'hef', chip: 'hailo8', bytes: hef8, sha256: sha(hef8) },
      { role: 'hef', chip: 'hailo8l', bytes: hef8l },
      { role: 'pre', bytes: pre.bytes },
      { role: 'post', bytes: post.bytes, sha256: sha(post.bytes) },
    ], bundleManifest));
    expect(record.sha256).toBe(sha(model.bytes));
    expect(record.artifacts.map((a) => [a.role, a.chip, a.sha256, a.size])).toEqual([
      ['hef', 'hailo8', sha(hef8), hef8.byteLength],
      ['hef', 'hailo8l', sha(hef8l), hef8l.byteLength],
      ['pre', '', sha(pre.bytes), pre.bytes.byteLength],
      ['post', '', sha(post.bytes), post.bytes.byteLength],
    ]);
    expect(record.artifacts[2]?.outputs.map((t) => t.name)).toEqual(['y']);
    expect(await stored()).toEqual([
      `${sha(hef8)}.hef`, `${sha(hef8l)}.hef`, `${sha(model.bytes)}.onnx`, `${sha(post.bytes)}.onnx`, `${sha(pre.bytes)}.onnx`,
    ].sort());

    // From Redis, not the cache: what another orchestrator of the fleet reads.
    const fresh = new ModelRegistry(redis, dataDir, captureLogger('ORCH').logger);
    const info = toModelInfo((await fresh.get('det'))!);
    expect(info.artifacts).toHaveLength(4);
    expect(info.hailo).toEqual(bundleManifest);

    const served: Buffer[] = [];
    for await (const chunk of registry.readChunks(sha(hef8l), 0)) served.push(chunk.data);
    expect(Buffer.concat(served).equals(hef8l)).toBe(true);
  });

  it('keeps a plain model as it was: no artifacts, no manifest, size 0 not checked', async () => {
    const record = await registry.add(...upload('plain', model.bytes, [], null, 0));
    expect(record.artifacts).toEqual([]);
    expect(toModelInfo(record).hailo).toBeNull();
  });

  it('deletes on remove only the files no other model has', async () => {
    await registry.add(...upload('a', model.bytes, [{ role: 'hef', chip: 'hailo8', bytes: hef8 }], manifest()));
    await registry.add(...upload('b', pre.bytes, [{ role: 'hef', chip: 'hailo8', bytes: hef8 }, { role: 'hef', chip: 'hailo8l', bytes: hef8l }],
      manifest({ inputs: [map('x', 'in')] })));
    await registry.remove('b');
    expect(await stored()).toEqual([`${sha(hef8)}.hef`, `${sha(model.bytes)}.onnx`].sort());
    await registry.remove('a');
    expect(await stored()).toEqual([]);
  });

  const hef = (): Part => ({ role: 'hef', chip: 'hailo8', bytes: hef8 });
  const refusals: Array<[string, string, () => ReturnType<typeof upload>]> = [
    ['files and no model.onnx', 'ORCH-REQ-270', () => upload('bad', new Uint8Array(), [hef()], manifest())],
    ['model.onnx that is not ONNX', 'ORCH-LOAD-101', () => upload('bad', notOnnxBytes(), [hef()], manifest())],
    ['pre.onnx that is not ONNX', 'ORCH-LOAD-101', () => upload('bad', model.bytes, [hef(), { role: 'pre', bytes: notOnnxBytes() }], manifest())],
    ['an unknown role', 'ORCH-REQ-271', () => upload('bad', model.bytes, [hef(), { role: 'weights', bytes: hef8 }], manifest())],
    ['an unknown chip', 'ORCH-REQ-271', () => upload('bad', model.bytes, [{ ...hef(), chip: 'hailo15' }], manifest())],
    ['a chip twice', 'ORCH-REQ-271', () => upload('bad', model.bytes, [hef(), hef()], manifest())],
    ['pre.onnx twice', 'ORCH-REQ-271', () => upload('bad', model.bytes, [hef(), { role: 'pre', bytes: pre.bytes }, { role: 'pre', bytes: pre.bytes }], manifest())],
    ['an empty file', 'ORCH-REQ-271', () => upload('bad', model.bytes, [{ ...hef(), bytes: new Uint8Array() }], manifest())],
    ['pre.onnx without a HEF', 'ORCH-REQ-271', () => upload('bad', model.bytes, [{ role: 'pre', bytes: pre.bytes }], null)],
    ['a HEF without a manifest', 'ORCH-REQ-272', () => upload('bad', model.bytes, [hef()], null)],
    ['a manifest input that is no input', 'ORCH-REQ-272', () => upload('bad', model.bytes, [hef()], manifest({ inputs: [map('images', 'in')] }))],
    ['a manifest input that is not pre.onnx\'s output', 'ORCH-REQ-272',
      () => upload('bad', model.bytes, [hef(), { role: 'pre', bytes: pre.bytes }], manifest())],
    ['a model output left unmapped', 'ORCH-REQ-272', () => upload('bad', model.bytes, [hef()], manifest({ outputs: [] }))],
    ['post.onnx whose outputs are not the model\'s', 'ORCH-REQ-272',
      () => upload('bad', model.bytes, [hef(), { role: 'post', bytes: identityModel('int32').bytes }], manifest({ outputs: [map('x', 'o')] }))],
    ['a negative tolerance', 'ORCH-REQ-272', () => upload('bad', model.bytes, [hef()], manifest({ toleranceRel: -0.1 }))],
    ['a vstream missing', 'ORCH-REQ-272', () => upload('bad', model.bytes, [hef()], manifest({ inputs: [map('x', '')] }))],
    ["a dtype other than the tensor's (the shim converts nothing)", 'ORCH-REQ-272',
      () => upload('bad', model.bytes, [hef()], manifest({ inputs: [{ ...map('x', 'affine/input_layer1'), dtype: 'uint8' }] }))],
    ['a sha256 that differs', 'ORCH-LOAD-112', () => upload('bad', model.bytes, [{ ...hef(), sha256: sha(hef8l) }], manifest())],
    ['a stream shorter than declared', 'ORCH-LOAD-102', () => upload('bad', model.bytes, [{ ...hef(), size: hef8.byteLength + 5 }], manifest())],
  ];

  it.each(refusals)('refuses a bundle with %s (%s) and stores nothing', async (_what, code, build) => {
    await registry.add(...upload('kept', model.bytes, [], null));
    const before = await stored();
    await expect(registry.add(...build())).rejects.toMatchObject({ code });
    expect(await stored()).toEqual(before);
    expect(await redis.exists(redisKeys.model('bad'))).toBe(0);
    expect((await registry.list()).map((m) => m.name)).toEqual(['kept']);
  });
});
