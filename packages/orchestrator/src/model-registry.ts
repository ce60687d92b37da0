import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type { ModelInfo, TensorSpec } from '@conclave/protocol';
import { inspectModel } from './model-inspector.js';
import { redisKeys } from './redis-keys.js';

export interface ModelRecord {
  name: string;
  sha256: string;
  size: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  addedAtMs: number;
}

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Chunk size for model transfer to nodes: well under gRPC's message limit, large enough to stream fast. */
export const MODEL_CHUNK_BYTES = 256 * 1024;

/**
 * Models known to the fleet. Files live content-addressed in `<dataDir>/models/<sha256>.onnx`;
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

  /**
   * Stores an uploaded model: writes the chunks to a temporary file while hashing them,
   * checks the size announced in the header, reads the signature with onnxruntime (which
   * refuses a file that is not ONNX), then moves the file into place and records it.
   */
  async add(name: string, expectedSize: number, chunks: AsyncIterable<Uint8Array>): Promise<ModelRecord> {
    if (!MODEL_NAME.test(name)) throw new ConclaveError('ORCH-REQ-205', { detail: JSON.stringify(name) });
    await mkdir(this.dir, { recursive: true });
    const tmpPath = join(this.dir, `.upload-${randomUUID()}`);
    const hash = createHash('sha256');
    let size = 0;
    const file = await open(tmpPath, 'w');
    try {
      try {
        for await (const chunk of chunks) {
          hash.update(chunk);
          size += chunk.byteLength;
          await file.write(chunk);
        }
      } finally {
        await file.close();
      }
      if (expectedSize > 0 && size !== expectedSize) {
        throw new ConclaveError('ORCH-LOAD-102', { detail: `received ${size} of ${expectedSize} bytes` });
      }
      const signature = await inspectModel(tmpPath).catch((err: unknown) => {
        // onnxruntime names the file it read: the orchestrator's temporary path is no business of the uploader's.
        const message = (err instanceof Error ? err.message : String(err)).split(tmpPath).join(`upload of "${name}"`);
        throw new ConclaveError('ORCH-LOAD-101', { detail: message });
      });
      const sha256 = hash.digest('hex');
      await rename(tmpPath, this.pathOf(sha256));
      const record: ModelRecord = { name, sha256, size, ...signature, addedAtMs: Date.now() };
      await this.redis
        .multi()
        .hset(redisKeys.model(name), {
          name, sha256, size: String(size),
          inputs: JSON.stringify(record.inputs), outputs: JSON.stringify(record.outputs),
          addedAtMs: String(record.addedAtMs),
        })
        .sadd(redisKeys.models(), name)
        .exec();
      this.cache.set(name, record);
      this.logger.info('LOAD', 'model added', { model: name, sha256, size });
      return record;
    } finally {
      await rm(tmpPath, { force: true });
    }
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
   * Takes a model out of the registry (ORCH-REQ-202 for an unknown one) and deletes its file,
   * unless another name has the same content (files are stored by sha256). Nodes keep their
   * copies. Whether jobs still need it is the caller's to check. Returns the removed record.
   */
  async remove(name: string): Promise<ModelRecord> {
    const record = await this.require(name);
    await this.redis.multi().del(redisKeys.model(name)).srem(redisKeys.models(), name).exec();
    this.cache.delete(name);
    const shared = (await this.list()).some((other) => other.sha256 === record.sha256);
    if (!shared) await rm(this.pathOf(record.sha256), { force: true });
    this.logger.info('LOAD', 'model removed', { model: name, sha256: record.sha256, fileKept: shared });
    return record;
  }

  /** Streams a stored model file from `offset`, in transfer-sized chunks. */
  async *readChunks(sha256: string, offset: number): AsyncGenerator<{ offset: number; data: Buffer; totalSize: number }> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ConclaveError('ORCH-LOAD-103', { detail: `not a sha256: ${sha256}` });
    const path = this.pathOf(sha256);
    const totalSize = await stat(path).then(
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
  };
}
