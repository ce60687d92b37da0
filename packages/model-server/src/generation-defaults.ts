import { ConclaveError } from '@conclave/common';
import type { EngineRequest } from './engine-protocol.js';
import type { GenerationParams } from './generation-loop.js';
import type { ModelFiles } from './model-files.js';

/** Used when neither the request nor generation_config gives a length. */
export const DEFAULT_MAX_TOKENS = 256;

/** The context length a model declares, from config.json or the tokenizer config. */
export function contextLengthOf(files: ModelFiles): number {
  for (const [source, key] of [
    [files.config, 'max_position_embeddings'],
    [files.config, 'n_positions'],
    [files.config, 'max_sequence_length'],
    [files.tokenizerConfig, 'model_max_length'],
  ] as const) {
    const v = source[key];
    // Tokenizer configs use 1e30 for "no limit"; that is no context length.
    if (typeof v === 'number' && v > 0 && v < 1e7) return v;
  }
  return 2048;
}

/** Applies the model's defaults to a request and checks it against the context. */
export function resolveGeneration(request: EngineRequest, files: ModelFiles, promptTokens: number): GenerationParams {
  const context = contextLengthOf(files);
  const gen = files.generationConfig;
  const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
  const room = context - promptTokens;
  if (room <= 0 || (request.maxTokens !== undefined && request.maxTokens > room)) {
    throw new ConclaveError('MODEL-REQ-204', {
      detail: `prompt has ${promptTokens} tokens, max_tokens is ${request.maxTokens ?? 'unset'}, context is ${context}`,
      data: { promptTokens, maxTokens: request.maxTokens, context },
    });
  }
  const sample = gen['do_sample'] === true;
  return {
    maxTokens: request.maxTokens ?? Math.min(num(gen['max_new_tokens']) ?? DEFAULT_MAX_TOKENS, room),
    temperature: request.temperature ?? (sample ? (num(gen['temperature']) ?? 1) : 0),
    topK: request.topK ?? (sample ? (num(gen['top_k']) ?? 0) : 0),
    topP: request.topP ?? (sample ? (num(gen['top_p']) ?? 1) : 1),
    seed: request.seed,
    stop: request.stop ?? [],
    ignoreEos: request.ignoreEos ?? false,
    noCache: request.noCache ?? false,
  };
}
