import { InferenceSession, Tensor } from 'onnxruntime-node';
import { ConclaveError } from '@conclave/common';
import type { ModelConfig } from './model-config.js';
import type { ModelFiles } from './model-files.js';

/** What the generation loop needs to know about a decoder's inputs and outputs. */
export interface DecoderSignature {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Number of `past_key_values.N.*` layers; 0 for a model without a KV cache. */
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly kvType: 'float32' | 'float16';
  readonly hasAttentionMask: boolean;
  readonly hasPositionIds: boolean;
  /** optimum's merged decoders take a boolean that picks the with-past branch. */
  readonly hasUseCacheBranch: boolean;
}

export interface DecoderSessionOptions {
  /** Threads for one forward pass. */
  intraOpThreads: number;
}

/** The KV cache of one sequence: the `present.*` tensors of its last step. */
export type KvCache = Map<string, Tensor>;

/**
 * One onnxruntime session over a decoder, loaded by path (external data is
 * resolved next to the file by the runtime; the file is never also read into a
 * buffer, which would hold the weights twice).
 */
export class DecoderSession {
  private constructor(
    private readonly session: InferenceSession,
    readonly signature: DecoderSignature,
  ) {}

  static async create(files: ModelFiles, config: ModelConfig, options: DecoderSessionOptions): Promise<DecoderSession> {
    let session: InferenceSession;
    try {
      session = await InferenceSession.create(files.onnxPath, {
        intraOpNumThreads: options.intraOpThreads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
      });
    } catch (cause) {
      throw new ConclaveError('MODEL-LOAD-103', {
        detail: `onnxruntime could not load ${files.onnxPath}: ${cause instanceof Error ? cause.message : String(cause)}`,
        data: { file: files.onnxPath },
        cause,
      });
    }
    try {
      return new DecoderSession(session, readSignature(session, config));
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /** An empty cache: past tensors with a past length of 0. */
  emptyCache(): KvCache {
    const { layers, kvHeads, headDim, kvType } = this.signature;
    const cache: KvCache = new Map();
    for (let i = 0; i < layers; i++) {
      for (const kind of ['key', 'value']) {
        const data = kvType === 'float16' ? new Uint16Array(0) : new Float32Array(0);
        cache.set(`past_key_values.${i}.${kind}`, new Tensor(kvType, data, [1, kvHeads, 0, headDim]));
      }
    }
    return cache;
  }

  /**
   * One forward pass over `ids` placed after `pastLength` cached positions.
   * Returns the logits of the last position and the cache to use next.
   */
  async forward(ids: readonly number[], pastLength: number, cache: KvCache): Promise<{ logits: Float32Array; cache: KvCache }> {
    const sig = this.signature;
    const n = ids.length;
    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor('int64', BigInt64Array.from(ids, (x) => BigInt(x)), [1, n]),
    };
    if (sig.hasAttentionMask) {
      feeds['attention_mask'] = new Tensor('int64', new BigInt64Array(pastLength + n).fill(1n), [1, pastLength + n]);
    }
    if (sig.hasPositionIds) {
      feeds['position_ids'] = new Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(pastLength + i)), [1, n]);
    }
    if (sig.hasUseCacheBranch) feeds['use_cache_branch'] = new Tensor('bool', [pastLength > 0], [1]);
    for (const [name, tensor] of cache) feeds[name] = tensor;
    const out = await this.session.run(feeds);
    const logits = out['logits'];
    if (!logits) throw new Error('model returned no logits');
    const vocab = logits.dims[logits.dims.length - 1] as number;
    const rows = logits.dims.length === 3 ? (logits.dims[1] as number) : 1;
    const last = toFloat32(logits, (rows - 1) * vocab, vocab);
    const next: KvCache = new Map();
    for (let i = 0; i < sig.layers; i++) {
      for (const kind of ['key', 'value']) {
        const present = out[`present.${i}.${kind}`];
        if (!present) throw new Error(`model returned no present.${i}.${kind}`);
        next.set(`past_key_values.${i}.${kind}`, present);
      }
    }
    return { logits: last, cache: next };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

function readSignature(session: InferenceSession, config: ModelConfig): DecoderSignature {
  const inputNames = [...session.inputNames];
  const outputNames = [...session.outputNames];
  const supported = /^(input_ids|attention_mask|position_ids|use_cache_branch|past_key_values\.\d+\.(key|value))$/;
  const unknown = inputNames.filter((n) => !supported.test(n));
  if (!inputNames.includes('input_ids') || !outputNames.includes('logits') || unknown.length > 0) {
    throw new ConclaveError('MODEL-LOAD-105', {
      detail: `inputs [${inputNames.join(', ')}], outputs [${outputNames.join(', ')}]`,
      data: { inputs: inputNames, outputs: outputNames },
    });
  }
  const layers = inputNames.filter((n) => /^past_key_values\.\d+\.key$/.test(n)).length;
  for (let i = 0; i < layers; i++) {
    for (const kind of ['key', 'value']) {
      if (!inputNames.includes(`past_key_values.${i}.${kind}`) || !outputNames.includes(`present.${i}.${kind}`)) {
        throw new ConclaveError('MODEL-LOAD-105', { detail: `layer ${i} lacks past_key_values.${i}.${kind} or present.${i}.${kind}` });
      }
    }
  }
  let kvHeads = 0;
  let headDim = 0;
  let kvType: 'float32' | 'float16' = 'float32';
  if (layers > 0) {
    const meta = session.inputMetadata.find((m) => m.name === 'past_key_values.0.key');
    if (meta?.isTensor) {
      kvType = meta.type === 'float16' ? 'float16' : 'float32';
      const [, heads, , dim] = meta.shape;
      if (typeof heads === 'number') kvHeads = heads;
      if (typeof dim === 'number') headDim = dim;
    }
    // Exports with symbolic head dims: fall back to config.json, read per model_type as optimum does.
    kvHeads ||= config.kvHeads ?? 0;
    headDim ||= config.headDim ?? 0;
    if (!kvHeads || !headDim) {
      throw new ConclaveError('MODEL-LOAD-105', {
        detail:
          `the KV cache's ${kvHeads ? 'head size' : 'head count'} is symbolic in the ONNX file and config.json ` +
          `(model_type ${config.modelType ?? 'unset'}) does not give it; see docs/model-server.md for the keys read`,
      });
    }
  }
  return {
    inputNames,
    outputNames,
    layers,
    kvHeads,
    headDim,
    kvType,
    hasAttentionMask: inputNames.includes('attention_mask'),
    hasPositionIds: inputNames.includes('position_ids'),
    hasUseCacheBranch: inputNames.includes('use_cache_branch'),
  };
}

function toFloat32(tensor: Tensor, offset: number, length: number): Float32Array {
  if (tensor.type === 'float32') return (tensor.data as Float32Array).slice(offset, offset + length);
  if (tensor.type === 'float16') {
    const half = tensor.data as Uint16Array;
    const out = new Float32Array(length);
    for (let i = 0; i < length; i++) out[i] = halfToFloat(half[offset + i] as number);
    return out;
  }
  throw new ConclaveError('MODEL-LOAD-105', { detail: `logits of type ${tensor.type} are not supported` });
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}
