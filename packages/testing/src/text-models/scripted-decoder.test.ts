import { InferenceSession, Tensor } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scriptedDecoderModel, type DecoderArchitecture, type ScriptedDecoderOptions } from './scripted-decoder.js';

const PROMPT = [11, 12, 13];
const SCRIPT = [101, 7, 250, 42, 7, 199];
const FILLER = 5;
const SCRIPT_START = PROMPT.length - 1;
const EXTRA_STEPS = 3;
const EXPECTED = [...SCRIPT, ...new Array<number>(EXTRA_STEPS).fill(FILLER)];
const MAX_FILE_BYTES = 15 * 1024 * 1024;

type Cache = Map<string, Tensor>;

interface Case {
  options: ScriptedDecoderOptions;
  layers: number;
  kvHeads: number;
  headDim: number;
  /** A KV shape the model must refuse. */
  wrongKv: (pastLength: number) => number[];
}

const CASES: Readonly<Record<DecoderArchitecture, Case>> = {
  gpt2: {
    options: { architecture: 'gpt2', vocabSize: 50257, script: SCRIPT, scriptStart: SCRIPT_START, fillerId: FILLER },
    layers: 2,
    kvHeads: 4,
    headDim: 8,
    wrongKv: (past) => [1, 4, past, 9],
  },
  llama: {
    options: { architecture: 'llama', vocabSize: 300, script: SCRIPT, scriptStart: SCRIPT_START, fillerId: FILLER },
    layers: 2,
    kvHeads: 2,
    headDim: 8,
    wrongKv: (past) => [1, 4, past, 8],
  },
};

function ids(values: readonly number[]): Tensor {
  return new Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), [1, values.length]);
}

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

describe.each(['gpt2', 'llama'] as const)('scriptedDecoderModel(%s)', (architecture) => {
  const c = CASES[architecture];
  let bytes: Uint8Array;
  let session: InferenceSession;

  const cacheOf = (dims: (past: number) => number[], past = 0): Cache => {
    const cache: Cache = new Map();
    const shape = dims(past);
    for (let i = 0; i < c.layers; i++) {
      for (const kind of ['key', 'value']) {
        const size = shape.reduce((n, d) => n * d, 1);
        cache.set(`past_key_values.${i}.${kind}`, new Tensor('float32', new Float32Array(size), shape));
      }
    }
    return cache;
  };
  const emptyCache = () => cacheOf((past) => [1, c.kvHeads, past, c.headDim]);

  /** One forward pass as the model server makes it; the logits of the last position and the next cache. */
  const forward = async (tokens: readonly number[], pastLength: number, cache: Cache, positions?: readonly number[]) => {
    const feeds: Record<string, Tensor> = {
      input_ids: ids(tokens),
      attention_mask: new Tensor('int64', new BigInt64Array(pastLength + tokens.length).fill(1n), [1, pastLength + tokens.length]),
    };
    if (architecture === 'llama') feeds['position_ids'] = ids(positions ?? tokens.map((_, i) => pastLength + i));
    for (const [name, t] of cache) feeds[name] = t;
    const out = await session.run(feeds);
    const logits = out['logits']!;
    const vocab = logits.dims[2]!;
    const last = (logits.data as Float32Array).slice((tokens.length - 1) * vocab, tokens.length * vocab);
    const next: Cache = new Map();
    for (let i = 0; i < c.layers; i++) {
      for (const kind of ['key', 'value']) next.set(`past_key_values.${i}.${kind}`, out[`present.${i}.${kind}`]!);
    }
    return { logits: last, cache: next };
  };

  beforeAll(async () => {
    bytes = scriptedDecoderModel(c.options);
    session = await InferenceSession.create(bytes, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all', // as the model server loads decoders
      // The shape-mismatch tests fail runs on purpose; their messages are asserted, not logged.
      logSeverityLevel: 4,
    });
  });
  afterAll(async () => {
    await session?.release();
  });

  it('greedy decoding with the KV cache emits the script, then filler', async () => {
    let { logits, cache } = await forward(PROMPT, 0, emptyCache());
    const out = [argmax(logits)];
    let past = PROMPT.length;
    expect(cache.get('present.0.key')).toBeUndefined();
    expect(cache.get('past_key_values.0.key')!.dims).toEqual([1, c.kvHeads, PROMPT.length, c.headDim]);
    while (out.length < EXPECTED.length) {
      ({ logits, cache } = await forward([out[out.length - 1]!], past, cache));
      past += 1;
      out.push(argmax(logits));
    }
    expect(out).toEqual(EXPECTED);
    expect(cache.get('past_key_values.1.value')!.dims).toEqual([1, c.kvHeads, past, c.headDim]);
  });

  it('recomputing from an empty cache each step gives the same tokens and logits', async () => {
    const tokens = [...PROMPT];
    let cached = await forward(PROMPT, 0, emptyCache());
    while (tokens.length < PROMPT.length + EXPECTED.length) {
      const full = await forward(tokens, 0, emptyCache());
      expect(argmax(full.logits)).toBe(EXPECTED[tokens.length - PROMPT.length]);
      const gap = full.logits.reduce((m, x, i) => Math.max(m, Math.abs(x - cached.logits[i]!)), 0);
      expect(gap).toBeLessThan(1e-4);
      const next = argmax(full.logits);
      cached = await forward([next], tokens.length, cached.cache);
      tokens.push(next);
    }
  });

  it('puts the attention on the path to the logits, below the scripted margin', async () => {
    const prefill = await forward(PROMPT, 0, emptyCache());
    const step = await forward([SCRIPT[0]!], PROMPT.length, prefill.cache);
    const zeroed = await forward([SCRIPT[0]!], PROMPT.length, cacheOf((past) => [1, c.kvHeads, past, c.headDim], PROMPT.length));
    const term = step.logits.map((x, i) => x - (i === SCRIPT[1] ? 20 : 0));
    const magnitude = term.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    expect(magnitude).toBeGreaterThan(1e-3);
    expect(magnitude).toBeLessThan(0.5);
    // A wrong cache of the right shape changes the logits but not the argmax.
    const change = zeroed.logits.reduce((m, x, i) => Math.max(m, Math.abs(x - step.logits[i]!)), 0);
    expect(change).toBeGreaterThan(1e-4);
    expect(argmax(zeroed.logits)).toBe(SCRIPT[1]);
  });

  it('declares every KV dimension symbolic', () => {
    for (const name of ['past_key_values.0.key', `past_key_values.${c.layers - 1}.value`]) {
      const meta = session.inputMetadata.find((m) => m.name === name);
      expect(meta?.isTensor).toBe(true);
      const shape = meta?.isTensor ? meta.shape : [];
      expect(shape).toHaveLength(4);
      expect(shape.every((d) => typeof d === 'string')).toBe(true);
    }
    expect(session.outputNames).toEqual([
      'logits',
      ...Array.from({ length: c.layers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat(),
    ]);
  });

  it('has position_ids only for llama', () => {
    expect(session.inputNames.includes('position_ids')).toBe(architecture === 'llama');
    expect(session.inputNames.slice(0, 2)).toEqual(['input_ids', 'attention_mask']);
  });

  it('rejects a past of the wrong shape, empty or not', async () => {
    await expect(forward(PROMPT, 0, cacheOf(c.wrongKv))).rejects.toThrow(/mismatched dimensions/);
    const prefill = await forward(PROMPT, 0, emptyCache());
    expect(prefill.cache.size).toBe(2 * c.layers);
    await expect(forward([SCRIPT[0]!], PROMPT.length, cacheOf(c.wrongKv, PROMPT.length))).rejects.toThrow(/mismatched dimensions/);
  });

  if (architecture === 'llama') {
    it('takes positions from position_ids, not from the past length', async () => {
      const { logits } = await forward(PROMPT, 0, emptyCache(), [SCRIPT_START + 1, SCRIPT_START + 2, SCRIPT_START + 3]);
      expect(argmax(logits)).toBe(SCRIPT[3]);
    });
  } else {
    it('stays under 15 MB at GPT-2 vocabulary size', () => {
      expect(bytes.byteLength).toBeLessThan(MAX_FILE_BYTES);
    });
  }
});

describe('scriptedDecoderModel options', () => {
  it('refuses kvHeads that do not divide heads and tokens outside the vocabulary', () => {
    const base = { architecture: 'llama', vocabSize: 300, script: SCRIPT, scriptStart: 2, fillerId: FILLER } as const;
    expect(() => scriptedDecoderModel({ ...base, heads: 4, kvHeads: 3 })).toThrow(/does not divide/);
    expect(() => scriptedDecoderModel({ ...base, fillerId: 300 })).toThrow(/outside the vocabulary/);
  });
});
