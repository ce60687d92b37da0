import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecoderSession } from './decoder-session.js';
import { DEMO_EXTERNAL_DATA_MODEL_DIR, DEMO_MODEL_DIR, DEMO_NO_CACHE_MODEL_DIR } from './demo-model.js';
import { GenerationLoop, type GenerationParams } from './generation-loop.js';
import { readModelConfig } from './model-config.js';
import { inspectModelDir } from './model-files.js';
import { TextCodec } from './text-codec.js';

// Real onnxruntime on the demo decoder that `prebuild` writes (scripts/build-demo-model.mjs).
const opened: DecoderSession[] = [];

async function open(dir: string): Promise<{ loop: GenerationLoop; codec: TextCodec; decoder: DecoderSession }> {
  const files = inspectModelDir(dir);
  const codec = TextCodec.fromModelFiles(files);
  const decoder = await DecoderSession.create(files, readModelConfig(files), { intraOpThreads: 1 });
  opened.push(decoder);
  return { loop: new GenerationLoop(decoder, codec), codec, decoder };
}

const greedy: GenerationParams = { maxTokens: 60, temperature: 0, topK: 0, topP: 1, seed: 1, stop: [], ignoreEos: true };

describe('GenerationLoop on the demo decoder', () => {
  let cached: Awaited<ReturnType<typeof open>>;
  let uncached: Awaited<ReturnType<typeof open>>;

  beforeAll(async () => {
    cached = await open(DEMO_MODEL_DIR);
    uncached = await open(DEMO_NO_CACHE_MODEL_DIR);
  });
  afterAll(async () => {
    await Promise.all(opened.map((d) => d.dispose()));
  });

  it('reads the KV-cache signature of the export', () => {
    expect(cached.decoder.signature.layers).toBe(1);
    expect(cached.decoder.signature.hasPositionIds).toBe(true);
    expect(uncached.decoder.signature.layers).toBe(0);
  });

  it('writes readable deterministic text', async () => {
    const prompt = cached.codec.encodeChat([{ role: 'user', content: 'who are you?' }]);
    const out = await cached.loop.generate(prompt, { ...greedy, maxTokens: 6 });
    expect(out.text).toBe('this is the conclave demo model');
  });

  it.each([
    ['greedy', greedy],
    ['sampled', { ...greedy, temperature: 1.3, topK: 8, topP: 0.95, seed: 1234 }],
  ])('gives token-for-token the same output with the KV cache as with full recomputation (%s)', async (_, params) => {
    const prompt = cached.codec.encodePrompt('it knows the text');
    const withCache = await cached.loop.generate(prompt, params);
    const recomputed = await cached.loop.generate(prompt, { ...params, noCache: true });
    const otherExport = await uncached.loop.generate(prompt, params);
    expect(withCache.tokenIds).toHaveLength(params.maxTokens);
    expect(recomputed.tokenIds).toEqual(withCache.tokenIds);
    expect(otherExport.tokenIds).toEqual(withCache.tokenIds);
  });

  it('gives the same logits at every step with and without the cache', async () => {
    const ids = cached.codec.encodePrompt('this is a tiny model');
    let cache = cached.decoder.emptyCache();
    let pending = ids;
    const all = [...ids];
    for (let step = 0; step < 10; step++) {
      const a = await cached.decoder.forward(pending, all.length - pending.length, cache);
      const b = await uncached.decoder.forward(all, 0, new Map());
      for (let i = 0; i < a.logits.length; i++) expect(a.logits[i]).toBeCloseTo(b.logits[i] as number, 4);
      cache = a.cache;
      const next = step % 3; // any token: the point is the cache, not the choice
      all.push(next + 6);
      pending = [next + 6];
    }
  });

  it('stops at a stop sequence, EOS and max_tokens', async () => {
    const prompt = cached.codec.encodePrompt('hello');
    const stopped = await cached.loop.generate(prompt, { ...greedy, stop: [' demo'] });
    expect(stopped).toMatchObject({ text: 'this is the conclave', finishReason: 'stop' });
    const sampled = await cached.loop.generate(prompt, { ...greedy, temperature: 1, seed: 5, maxTokens: 400, ignoreEos: false });
    expect(sampled.finishReason).toBe('stop');
    expect(sampled.text.endsWith('.')).toBe(true);
    const short = await cached.loop.generate(prompt, { ...greedy, maxTokens: 3 });
    expect(short).toMatchObject({ finishReason: 'length', tokenIds: [6, 7, 8] });
  });

  it('stops at once when cancelled', async () => {
    let calls = 0;
    const out = await cached.loop.generate(cached.codec.encodePrompt('hello'), { ...greedy, maxTokens: 1000 }, {
      isCancelled: () => ++calls > 5,
    });
    expect(out.finishReason).toBe('cancelled');
    expect(out.tokenIds).toHaveLength(5);
  });

  it('loads a model whose weights are in external data, by path', async () => {
    const files = inspectModelDir(DEMO_EXTERNAL_DATA_MODEL_DIR);
    expect(files.externalDataPaths).toHaveLength(1);
    expect(files.weightBytes).toBeGreaterThan(400_000);
    const external = await open(DEMO_EXTERNAL_DATA_MODEL_DIR);
    const prompt = cached.codec.encodePrompt('hello');
    const a = await external.loop.generate(prompt, greedy);
    const b = await cached.loop.generate(prompt, greedy);
    expect(a.tokenIds).toEqual(b.tokenIds);
  });
});
