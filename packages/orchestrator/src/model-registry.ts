import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type { ModelInfo, TensorSpec } from '@conclave/protocol';
import { checkBundleHeader, checkManifest, fileLabel } from './model-bundle.js';
import type { BundleFile, BundleFileHeader, HailoManifestRecord, ModelArtifactRecord } from './model-bundle.js';
import { inspectModel } from './model-inspector.js';
import type { ModelSignature } from './model-inspector.js';
import { redisKeys } from './redis-keys.js';

export interface ModelRecord {
  name: string;
  sha256: string;
  size: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  addedAtMs: number;
  /** The bundle's files besides model.onnx (HEFs, pre/post parts); empty for a plain model. */
  artifacts: ModelArtifactRecord[];
  /** The bundle's Hailo manifest; undefined without a HEF. */
  hailo?: HailoManifestRecord;
}

/** What AddModel's header says of the upload. */
export interface ModelUpload {
  name: string;
  /** Of model.onnx; 0 for a plain model: not checked. */
  size: number;
  files?: readonly BundleFileHeader[];
  hailo?: HailoManifestRecord | null;
}

/** One part of an upload being received: model.onnx, then each bundle file. */
interface ReceivedPart {
  file: BundleFile | undefined;
  label: string;
  size: number;
  tmpPath: string;
  received: number;
  hash: Hash;
  sha256: string;
}

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Chunk size for model transfer to nodes: well under gRPC's message limit, large enough to stream fast. */
export const MODEL_CHUNK_BYTES = 256 * 1024;

/**
 * Models known to the fleet. Files live content-addressed in `<dataDir>/models/<sha256>.onnx`
 * (model.onnx, pre/post parts) and `<sha256>.hef` (HEFs), all served to nodes by digest;
 * the name → record mapping lives in Redis. Records are cached in memory because every
 * job submission looks its model up.
 */
export class ModelRegistry {
  private readonly dir: string;
  private readonly cache = new Map<string, ModelRecord>();

  constructor(
    private readonly redis: Redis,
    dataDir: string,
    private readonly logger: Logger,
  ) {
    this.dir = join(dataDir, 'models');
  }

  pathOf(sha256: string): string {
    return join(this.dir, `${sha256}.onnx`);
  }

  private hefPathOf(sha256: string): string {
    return join(this.dir, `${sha256}.hef`);
  }

  /**
   * Stores an uploaded model or bundle. The header's bundle is checked before any byte is
   * read (model-bundle.ts); the stream then carries model.onnx and each listed file, in order,
   * split by their declared sizes into temporary files while hashing them. Then: the sizes
   * (ORCH-LOAD-102), the digests the header gives (ORCH-LOAD-112), each ONNX part's signature
   * read with onnxruntime (ORCH-LOAD-101 for one that is not ONNX), the manifest against them
   * (ORCH-REQ-272). Only when all pass are the files moved into place and recorded; otherwise
   * nothing is stored and the temporary files are removed.
   */
  async add(upload: ModelUpload, chunks: AsyncIterable<Uint8Array>): Promise<ModelRecord> {
    const { name } = upload;
    if (!MODEL_NAME.test(name)) throw new ConclaveError('ORCH-REQ-205', { detail: JSON.stringify(name) });
    const files = checkBundleHeader({ size: upload.size, files: upload.files ?? [], hailo: upload.hailo ?? null });
    await mkdir(this.dir, { recursive: true });
    const parts: ReceivedPart[] = [undefined, ...files].map((file) => ({
      file, label: file ? fileLabel(file) : 'model.onnx', size: file ? file.size : upload.size,
      tmpPath: join(this.dir, `.upload-${randomUUID()}`), received: 0, hash: createHash('sha256'), sha256: '',
    }));
    try {
      await this.receive(parts, chunks);
      const [model, ...rest] = parts as [ReceivedPart, ...ReceivedPart[]];
      for (const part of rest) {
        if (part.file?.sha256 && part.file.sha256 !== part.sha256) {
          throw new ConclaveError('ORCH-LOAD-112', {
            detail: `${part.label}: received ${part.sha256}, the manifest gives ${part.file.sha256}`, data: { file: part.label },
          });
        }
      }
      const signature = await this.inspect(name, model);
      const artifacts: ModelArtifactRecord[] = [];
      const signatures: { pre?: ModelSignature; post?: ModelSignature } = {};
      for (const part of rest) {
        const file = part.file as BundleFile;
        const partSignature = file.role === 'hef' ? { inputs: [], outputs: [] } : await this.inspect(name, part);
        if (file.role === 'pre' || file.role === 'post') signatures[file.role] = partSignature;
        artifacts.push({ role: file.role, chip: file.chip, sha256: part.sha256, size: part.received, ...partSignature });
      }
      const hailo = upload.hailo ?? undefined;
      if (hailo && artifacts.length > 0) checkManifest(hailo, { model: signature, ...signatures });
      for (const part of parts) await rename(part.tmpPath, part.file?.role === 'hef' ? this.hefPathOf(part.sha256) : this.pathOf(part.sha256));
      const record: ModelRecord = {
        name, sha256: model.sha256, size: model.received, ...signature, addedAtMs: Date.now(), artifacts,
        ...(hailo && artifacts.length > 0 ? { hailo } : {}),
      };
      await this.redis
        .multi()
        .hset(redisKeys.model(name), {
          name, sha256: record.sha256, size: String(record.size),
          inputs: JSON.stringify(record.inputs), outputs: JSON.stringify(record.outputs),
          addedAtMs: String(record.addedAtMs),
          artifacts: JSON.stringify(record.artifacts), hailo: record.hailo ? JSON.stringify(record.hailo) : '',
        })
        .sadd(redisKeys.models(), name)
        .exec();
      this.cache.set(name, record);
      this.logger.info('LOAD', 'model added', {
        model: name, sha256: record.sha256, size: record.size,
        ...(artifacts.length > 0 ? { artifacts: artifacts.map((a) => `${fileLabel(a)}:${a.sha256.slice(0, 12)}`).join(' ') } : {}),
      });
      return record;
    } finally {
      await Promise.all(parts.map((part) => rm(part.tmpPath, { force: true })));
    }
  }

  /**
   * Writes the stream into the parts, each up to its declared size, the rest to the next; the
   * last part takes what is left, so that too many bytes fail its size check. A plain model's
   * size 0 is not checked.
   */
  private async receive(parts: ReceivedPart[], chunks: AsyncIterable<Uint8Array>): Promise<void> {
    let index = 0;
    let file = await open((parts[0] as ReceivedPart).tmpPath, 'w');
    try {
      for await (const chunk of chunks) {
        let data = chunk;
        while (data.byteLength > 0) {
          const part = parts[index] as ReceivedPart;
          const room = index === parts.length - 1 ? data.byteLength : part.size - part.received;
          if (room === 0) {
            await file.close();
            index += 1;
            file = await open((parts[index] as ReceivedPart).tmpPath, 'w');
            continue;
          }
          const piece = data.subarray(0, room);
          part.hash.update(piece);
          part.received += piece.byteLength;
          await file.write(piece);
          data = data.subarray(piece.byteLength);
        }
      }
    } finally {
      await file.close();
    }
    for (const part of parts) {
      part.sha256 = part.hash.digest('hex');
      if (part.size > 0 && part.received !== part.size) {
        throw new ConclaveError('ORCH-LOAD-102', { detail: `${part.label}: received ${part.received} of ${part.size} bytes` });
      }
    }
  }

  /** The part's signature; ORCH-LOAD-101 naming the part when it is not ONNX. */
  private async inspect(name: string, part: ReceivedPart): Promise<ModelSignature> {
    return inspectModel(part.tmpPath).catch((err: unknown) => {
      // onnxruntime names the file it read: the orchestrator's temporary path is no business of the uploader's.
      const where = part.file ? `${part.label} of the upload of "${name}"` : `upload of "${name}"`;
      const message = (err instanceof Error ? err.message : String(err)).split(part.tmpPath).join(where);
      throw new ConclaveError('ORCH-LOAD-101', { detail: part.file ? `${part.label}: ${message}` : message, data: { file: part.label } });
    });
  }

  async get(name: string): Promise<ModelRecord | undefined> {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const hash = await this.redis.hgetall(redisKeys.model(name));
    if (!hash.sha256) return undefined;
    const record: ModelRecord = {
      name,
      sha256: hash.sha256,
      size: Number(hash.size),
      inputs: JSON.parse(hash.inputs ?? '[]') as TensorSpec[],
      outputs: JSON.parse(hash.outputs ?? '[]') as TensorSpec[],
      addedAtMs: Number(hash.addedAtMs),
      artifacts: JSON.parse(hash.artifacts || '[]') as ModelArtifactRecord[],
      ...(hash.hailo ? { hailo: JSON.parse(hash.hailo) as HailoManifestRecord } : {}),
    };
    this.cache.set(name, record);
    return record;
  }

  /** The record for `name`, or ORCH-REQ-202 listing the models that exist. */
  async require(name: string): Promise<ModelRecord> {
    const record = await this.get(name);
    if (record) return record;
    const known = (await this.redis.smembers(redisKeys.models())).sort();
    throw new ConclaveError('ORCH-REQ-202', {
      detail: `"${name}"; known models: ${known.length ? known.join(', ') : '(none — add one with `orchestrator models add`)'}`,
      data: { model: name, known },
    });
  }

  async list(): Promise<ModelRecord[]> {
    const names = (await this.redis.smembers(redisKeys.models())).sort();
    const records = await Promise.all(names.map((n) => this.get(n)));
    return records.filter((r): r is ModelRecord => r !== undefined);
  }

  /**
   * Takes a model out of the registry (ORCH-REQ-202 for an unknown one) and deletes its files
   * (model.onnx and the bundle's), except those another model has too (files are stored by
   * sha256). Nodes keep their copies. Whether jobs still need it is the caller's to check.
   * Returns the removed record.
   */
  async remove(name: string): Promise<ModelRecord> {
    const record = await this.require(name);
    await this.redis.multi().del(redisKeys.model(name)).srem(redisKeys.models(), name).exec();
    this.cache.delete(name);
    const inUse = new Set((await this.list()).flatMap(digestsOf));
    const deleted = digestsOf(record).filter((sha) => !inUse.has(sha));
    for (const sha of new Set(deleted)) {
      await rm(this.pathOf(sha), { force: true });
      await rm(this.hefPathOf(sha), { force: true });
    }
    this.logger.info('LOAD', 'model removed', { model: name, sha256: record.sha256, fileKept: inUse.has(record.sha256), filesDeleted: deleted.length });
    return record;
  }

  /** Streams a stored model file from `offset`, in transfer-sized chunks. */
  async *readChunks(sha256: string, offset: number): AsyncGenerator<{ offset: number; data: Buffer; totalSize: number }> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ConclaveError('ORCH-LOAD-103', { detail: `not a sha256: ${sha256}` });
    // Any stored file by its digest: model.onnx and pre/post parts, else a HEF.
    let path = this.pathOf(sha256);
    const totalSize = await stat(path).catch(() => stat((path = this.hefPathOf(sha256)))).then(
      (s) => s.size,
      (err: unknown) => {
        throw new ConclaveError('ORCH-LOAD-103', { detail: sha256, cause: err });
      },
    );
    let position = offset;
    for await (const data of createReadStream(path, { start: offset, highWaterMark: MODEL_CHUNK_BYTES })) {
      const buffer = data as Buffer;
      yield { offset: position, data: buffer, totalSize };
      position += buffer.byteLength;
    }
  }
}

export function toModelInfo(record: ModelRecord): ModelInfo {
  return {
    name: record.name, sha256: record.sha256, size: record.size,
    inputs: record.inputs, outputs: record.outputs, addedAtMs: record.addedAtMs,
    artifacts: record.artifacts, hailo: record.hailo ?? null,
  };
}

/** Every file a record stores, by digest. */
function digestsOf(record: ModelRecord): string[] {
  return [record.sha256, ...record.artifacts.map((a) => a.sha256)];
}
