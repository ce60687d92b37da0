import { ConclaveError } from '@conclave/common';
import type { EngineRequest } from './engine-protocol.js';
import type { GenerationParams } from './generation-loop.js';
import type { ModelConfig } from './model-config.js';

/** Used when neither the request nor generation_config gives a length. */
export const DEFAULT_MAX_TOKENS = 256;

/** Applies the model's defaults to a request and checks it against the context. */
export function resolveGeneration(
  request: EngineRequest,
  model: Pick<ModelConfig, 'contextLength'>,
  generationConfig: Record<string, unknown>,
  promptTokens: number,
): GenerationParams {
  const context = model.contextLength;
  const gen = generationConfig;
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
