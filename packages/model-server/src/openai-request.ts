import { ConclaveError } from '@conclave/common';
import type { EngineRequest } from './engine-protocol.js';
import type { ChatMessage } from './text-codec.js';

/** A parsed /v1/chat/completions or /v1/completions body. */
export interface CompletionCall {
  kind: 'chat' | 'text';
  model: string;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with usage before [DONE]. */
  streamUsage: boolean;
  request: EngineRequest;
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);
const MAX_STOPS = 4;

function invalid(field: string, why: string): ConclaveError {
  return new ConclaveError('MODEL-REQ-203', { detail: `${field}: ${why}`, data: { field } });
}

type Body = Record<string, unknown>;

function optional<T>(body: Body, field: string, check: (v: unknown) => T | undefined, why: string): T | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  const out = check(v);
  if (out === undefined) throw invalid(field, why);
  return out;
}

const num = (min: number, max: number) => (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? v : undefined;
const int = (min: number, max: number) => (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : undefined;
const bool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);

function content(v: unknown, field: string): string {
  if (typeof v === 'string') return v;
  // The array form: only text parts are meaningful to a text model.
  if (Array.isArray(v)) {
    return v
      .map((part, i) => {
        const p = part as { type?: unknown; text?: unknown };
        if (typeof part !== 'object' || part === null || p.type !== 'text' || typeof p.text !== 'string') {
          throw invalid(`${field}[${i}]`, 'only {"type": "text", "text": string} parts are supported');
        }
        return p.text;
      })
      .join('');
  }
  throw invalid(field, 'must be a string or an array of text parts');
}

/**
 * Validates a body against the OpenAI shape. Unknown fields are ignored (clients
 * send many); known fields with a wrong type or range are a 400 naming the field.
 */
export function parseCompletionCall(raw: unknown, kind: 'chat' | 'text', maxTokensLimit: number): CompletionCall {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('body', 'must be a JSON object');
  const body = raw as Body;
  if (typeof body['model'] !== 'string' || body['model'] === '') throw invalid('model', 'required string');
  const model = body['model'];
  let input: EngineRequest['input'];
  if (kind === 'chat') {
    const messages = body['messages'];
    if (!Array.isArray(messages) || messages.length === 0) throw invalid('messages', 'must be a non-empty array');
    const parsed: ChatMessage[] = messages.map((m: unknown, i) => {
      if (typeof m !== 'object' || m === null) throw invalid(`messages[${i}]`, 'must be an object');
      const { role, content: c } = m as { role?: unknown; content?: unknown };
      if (typeof role !== 'string' || !ROLES.has(role)) throw invalid(`messages[${i}].role`, `must be one of ${[...ROLES].join(', ')}`);
      return { role, content: content(c, `messages[${i}].content`) };
    });
    if (parsed.every((m) => m.content.trim() === '')) throw invalid('messages', 'all messages are empty');
    input = { messages: parsed };
  } else {
    let prompt = body['prompt'];
    if (Array.isArray(prompt) && prompt.length === 1) prompt = prompt[0];
    if (typeof prompt !== 'string') throw invalid('prompt', 'must be a string (or an array of one string)');
    // An empty prompt is OpenAI's "start of a document": the engine starts it from the model's BOS.
    input = { prompt };
  }
  const maxTokens =
    optional(body, 'max_completion_tokens', int(1, maxTokensLimit), `must be an integer in 1..${maxTokensLimit}`) ??
    optional(body, 'max_tokens', int(1, maxTokensLimit), `must be an integer in 1..${maxTokensLimit}`);
  const temperature = optional(body, 'temperature', num(0, 2), 'must be a number in 0..2');
  const topP = optional(body, 'top_p', num(Number.MIN_VALUE, 1), 'must be a number in (0, 1]');
  const topK = optional(body, 'top_k', int(-1, 1_000_000), 'must be an integer ≥ 0 (or -1 for none)');
  const seed = optional(body, 'seed', int(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER), 'must be an integer');
  const stream = optional(body, 'stream', bool, 'must be a boolean') ?? false;
  const ignoreEos = optional(body, 'ignore_eos', bool, 'must be a boolean');
  optional(body, 'n', int(1, 1), 'only n = 1 is supported');
  optional(body, 'frequency_penalty', num(-2, 2), 'must be a number in -2..2');
  optional(body, 'presence_penalty', num(-2, 2), 'must be a number in -2..2');
  optional(body, 'user', (v) => (typeof v === 'string' ? v : undefined), 'must be a string');
  if (body['logprobs'] === true || (typeof body['logprobs'] === 'number' && body['logprobs'] > 0)) {
    throw invalid('logprobs', 'not supported by this server');
  }
  const streamOptions = optional(body, 'stream_options', (v) => (typeof v === 'object' && !Array.isArray(v) ? (v as Body) : undefined), 'must be an object');
  const streamUsage = streamOptions ? (optional(streamOptions, 'include_usage', bool, 'must be a boolean') ?? false) : false;
  let stop = body['stop'];
  if (typeof stop === 'string') stop = [stop];
  if (stop !== undefined && stop !== null) {
    if (!Array.isArray(stop) || stop.length > MAX_STOPS || !stop.every((s) => typeof s === 'string' && s.length > 0)) {
      throw invalid('stop', `must be a non-empty string or an array of up to ${MAX_STOPS} non-empty strings`);
    }
  }
  const request: EngineRequest = { input, stream };
  if (maxTokens !== undefined) request.maxTokens = maxTokens;
  if (temperature !== undefined) request.temperature = temperature;
  if (topP !== undefined) request.topP = topP;
  if (topK !== undefined) request.topK = Math.max(0, topK);
  if (seed !== undefined) request.seed = seed;
  if (Array.isArray(stop)) request.stop = stop as string[];
  if (ignoreEos !== undefined) request.ignoreEos = ignoreEos;
  return { kind, model, stream, streamUsage, request };
}
