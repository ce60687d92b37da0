import type { LogLevel, LogMeta, Section } from '@conclave/common';
import type { FinishReason } from './generation-loop.js';
import type { ChatMessage } from './text-codec.js';

/** A generation request as the engine takes it: parsed, not yet defaulted against the model. */
export interface EngineRequest {
  input: { prompt: string } | { messages: ChatMessage[] };
  /** undefined: generation_config's max_new_tokens, capped by the context. */
  maxTokens?: number;
  /** undefined: 0 (greedy) unless generation_config says do_sample. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
  ignoreEos?: boolean;
  /** Send text deltas as they come (otherwise only the first-token mark and the result). */
  stream?: boolean;
  /** Recompute the full sequence each step (tests compare with the KV-cache path). */
  noCache?: boolean;
}

export interface ModelInfo {
  readonly dir: string;
  readonly contextLength: number;
  /** Which file and key the context length came from (`config.json n_positions`). */
  readonly contextLengthSource: string;
  readonly modelType: string | undefined;
  readonly layers: number;
  readonly inputNames: readonly string[];
  readonly weightBytes: number;
  readonly loadSeconds: number;
  readonly warmupSeconds: number;
}

export interface SerializedError {
  code: string;
  detail?: string;
  /** The request field the error is about (`data.field`), which the HTTP answer names as `param`. */
  field?: string;
}

export type ToWorker =
  | { t: 'load'; modelDir: string; intraOpThreads: number; warmup: boolean }
  | { t: 'generate'; id: number; requestId: string; request: EngineRequest }
  | { t: 'cancel'; id: number }
  | { t: 'free-caches' };

export type FromWorker =
  | { t: 'state'; state: 'warming' }
  | { t: 'session-created' }
  | { t: 'loaded'; info: ModelInfo }
  | { t: 'load-failed'; error: SerializedError }
  | { t: 'started'; id: number; promptTokens: number }
  | { t: 'delta'; id: number; text: string; tokens: number }
  | { t: 'first-token'; id: number }
  | { t: 'done'; id: number; text: string; promptTokens: number; completionTokens: number; finishReason: FinishReason }
  | { t: 'failed'; id: number; error: SerializedError }
  | { t: 'caches-freed'; cancelled: number }
  | { t: 'log'; level: LogLevel; section: Section; message: string; meta: LogMeta };
