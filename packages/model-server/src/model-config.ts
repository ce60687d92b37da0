import type { ModelFiles } from './model-files.js';

/** What the server needs from a model's config files, and where each value came from. */
export interface ModelConfig {
  /** `config.json` `model_type`; undefined when it has none. */
  readonly modelType: string | undefined;
  /** Longest sequence (prompt + completion), in tokens. */
  readonly contextLength: number;
  /** `file key` the context length was read from, or `default`. */
  readonly contextLengthSource: string;
  readonly attentionHeads: number | undefined;
  /** Heads of the KV cache: fewer than the attention heads under grouped-query attention. */
  readonly kvHeads: number | undefined;
  readonly headDim: number | undefined;
  /** Ids that end a generation: generation_config.json, config.json and the tokenizer's `eos_token`, together. */
  readonly eosTokenIds: readonly number[];
  /** Where an empty prompt starts. */
  readonly bosTokenId: number | undefined;
}

/** The context length when no file declares one. */
export const DEFAULT_CONTEXT_LENGTH = 2048;

/** config.json keys of one value, in the order they are tried. */
interface KeyNames {
  readonly context: readonly string[];
  readonly heads: readonly string[];
  readonly kvHeads: readonly string[];
  readonly hidden: readonly string[];
  readonly headDim: readonly string[];
}

/** Llama's names: what most decoders since (Mistral, Qwen2, Phi-3, Gemma…) use as well. */
const LLAMA_NAMES: KeyNames = {
  context: ['max_position_embeddings'],
  heads: ['num_attention_heads'],
  kvHeads: ['num_key_value_heads'],
  hidden: ['hidden_size'],
  // Gemma's head_dim (256) is not hidden_size / heads; most configs omit it.
  headDim: ['head_dim'],
};

/**
 * Key names per `model_type`, as transformers' config classes declare them (GPT-2
 * maps `num_attention_heads` to `n_head` and so on through its `attribute_map`).
 * docs/model-server.md has this table for readers; keep the two in step.
 */
const NAMES_BY_MODEL_TYPE: Readonly<Record<string, KeyNames>> = {
  gpt2: { context: ['n_positions', 'n_ctx'], heads: ['n_head'], kvHeads: [], hidden: ['n_embd'], headDim: [] },
  llama: LLAMA_NAMES,
  mistral: LLAMA_NAMES,
  mixtral: LLAMA_NAMES,
  qwen2: LLAMA_NAMES,
  qwen3: LLAMA_NAMES,
  phi3: LLAMA_NAMES,
  gemma: LLAMA_NAMES,
  gemma2: LLAMA_NAMES,
};

/** For a `model_type` not in the table: every name any of them uses. */
const ANY_NAMES: KeyNames = {
  context: ['max_position_embeddings', 'n_positions', 'max_sequence_length', 'seq_length', 'n_ctx'],
  heads: ['num_attention_heads', 'n_head', 'num_heads', 'n_heads'],
  kvHeads: ['num_key_value_heads', 'num_kv_heads', 'n_head_kv'],
  hidden: ['hidden_size', 'n_embd', 'd_model'],
  headDim: ['head_dim'],
};

/** Tokenizer configs write 1e30 (or similar) for "no limit": that is no context length. */
const LARGEST_CONTEXT = 1e7;

/**
 * Reads a model directory's config files the way transformers does for its
 * `model_type`. Dims are only a fallback: the ONNX file's own numeric dims win.
 */
export function readModelConfig(files: Pick<ModelFiles, 'config' | 'generationConfig' | 'tokenizerConfig'>): ModelConfig {
  const { config, generationConfig, tokenizerConfig } = files;
  const modelType = typeof config['model_type'] === 'string' ? config['model_type'] : undefined;
  const names = (modelType !== undefined && NAMES_BY_MODEL_TYPE[modelType]) || ANY_NAMES;
  const first = (keys: readonly string[]): number | undefined => {
    for (const key of keys) {
      const value = positiveInteger(config[key]);
      if (value !== undefined) return value;
    }
    return undefined;
  };

  let contextLength = DEFAULT_CONTEXT_LENGTH;
  let contextLengthSource = 'default';
  const contextKey = names.context.find((key) => positiveInteger(config[key]) !== undefined);
  const tokenizerMax = positiveInteger(tokenizerConfig['model_max_length']);
  if (contextKey !== undefined) {
    contextLength = config[contextKey] as number;
    contextLengthSource = `config.json ${contextKey}`;
  } else if (tokenizerMax !== undefined && tokenizerMax < LARGEST_CONTEXT) {
    contextLength = tokenizerMax;
    contextLengthSource = 'tokenizer_config.json model_max_length';
  }

  const attentionHeads = first(names.heads);
  // transformers' default: without num_key_value_heads every head has its own KV (no GQA).
  const kvHeads = first(names.kvHeads) ?? attentionHeads;
  const hidden = first(names.hidden);
  const headDim = first(names.headDim) ?? (hidden !== undefined && attentionHeads ? hidden / attentionHeads : undefined);

  // generation_config.json is what generate() uses; config.json's ids are older exports' copy.
  const eos = new Set<number>();
  for (const source of [generationConfig['eos_token_id'], config['eos_token_id']]) {
    for (const id of [source].flat()) if (Number.isInteger(id) && (id as number) >= 0) eos.add(id as number);
  }
  const bosTokenId = [generationConfig['bos_token_id'], config['bos_token_id']].find(
    (id): id is number => Number.isInteger(id) && (id as number) >= 0,
  );
  return {
    modelType,
    contextLength,
    contextLengthSource,
    attentionHeads,
    kvHeads,
    headDim: headDim !== undefined && Number.isInteger(headDim) ? headDim : undefined,
    eosTokenIds: [...eos],
    bosTokenId,
  };
}

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}
