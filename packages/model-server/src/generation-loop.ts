import { randomInt } from 'node:crypto';
import { ConclaveError } from '@conclave/common';
import type { DecoderSession, KvCache } from './decoder-session.js';
import { sampleToken, seededRandom, type SamplingParams } from './sampler.js';
import { StopMatcher } from './stop-matcher.js';
import type { TextCodec } from './text-codec.js';

export type FinishReason = 'stop' | 'length' | 'cancelled';

/** One generation, fully resolved (defaults applied, ranges checked). */
export interface GenerationParams extends SamplingParams {
  maxTokens: number;
  /** undefined: a random seed per request. */
  seed: number | undefined;
  stop: readonly string[];
  /** Keep generating past EOS (a vLLM extension; benchmarks and tests use it). */
  ignoreEos: boolean;
  /** Recompute the whole sequence every step instead of using the KV cache (tests compare both). */
  noCache?: boolean;
}

export interface GenerationHooks {
  /** Called for every token with the text it adds (may be empty while held back). */
  onToken?: (delta: string, tokenIndex: number) => void;
  /** Checked before every forward pass; true stops generation at once. */
  isCancelled?: () => boolean;
}

export interface GenerationOutput {
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
}

/**
 * The generation loop: prefill, then one token per forward pass, with the KV
 * cache when the model has one. Each `await` on the forward pass is a point
 * where other sequences in the same worker and cancel messages get their turn.
 */
export class GenerationLoop {
  constructor(
    private readonly decoder: DecoderSession,
    private readonly codec: TextCodec,
  ) {}

  async generate(promptIds: readonly number[], params: GenerationParams, hooks: GenerationHooks = {}): Promise<GenerationOutput> {
    if (promptIds.length === 0) throw new ConclaveError('MODEL-REQ-203', { detail: 'the prompt encodes to no tokens' });
    const hasCache = this.decoder.signature.layers > 0;
    const useCache = hasCache && !params.noCache;
    const random = seededRandom(params.seed ?? randomInt(0, 2 ** 31));
    const stops = new StopMatcher(params.stop);
    // The prompt's last ids are the decoder's context: a completion keeps its leading space.
    const detok = this.codec.streamDecoder(promptIds);
    const all = [...promptIds];
    const generated: number[] = [];
    let cache: KvCache = useCache ? this.decoder.emptyCache() : new Map();
    let pending: readonly number[] = promptIds;
    let finishReason: FinishReason = 'length';
    let text = '';
    let reachedStopSequence = false;
    while (generated.length < params.maxTokens) {
      if (hooks.isCancelled?.()) {
        finishReason = 'cancelled';
        break;
      }
      const pastLength = useCache ? all.length - pending.length : 0;
      // Full recomputation on a with-past export still feeds the (empty) past inputs.
      const past = useCache ? cache : hasCache ? this.decoder.emptyCache() : cache;
      const step = await this.decoder.forward(useCache ? pending : all, pastLength, past);
      if (useCache) cache = step.cache;
      const id = sampleToken(step.logits, params, random);
      if (!params.ignoreEos && this.codec.eosTokenIds.has(id)) {
        finishReason = 'stop';
        break;
      }
      all.push(id);
      generated.push(id);
      pending = [id];
      const { emit, stopped } = stops.push(detok.push(id));
      text += emit;
      hooks.onToken?.(emit, generated.length - 1);
      if (stopped) {
        finishReason = 'stop';
        reachedStopSequence = true;
        break;
      }
    }
    // Drop the cache before the caller continues: on a real model it is the largest allocation.
    cache = new Map();
    // After a stop sequence nothing is left to say. Otherwise the decoder may hold back the end of
    // the text (an unfinished character, a space the clean-up may drop) and the matcher a prefix of a stop.
    if (!reachedStopSequence) {
      const tail = stops.push(detok.finish());
      const rest = tail.emit + (tail.stopped ? '' : stops.flush());
      if (tail.stopped && finishReason === 'length') finishReason = 'stop';
      if (rest) {
        text += rest;
        hooks.onToken?.(rest, generated.length - 1);
      }
    }
    return { text, tokenIds: generated, finishReason };
  }
}
