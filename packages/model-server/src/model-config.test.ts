import { describe, expect, it } from 'vitest';
import { DEFAULT_CONTEXT_LENGTH, readModelConfig } from './model-config.js';

function read(config: Record<string, unknown>, generationConfig: Record<string, unknown> = {}, tokenizerConfig: Record<string, unknown> = {}) {
  return readModelConfig({ config, generationConfig, tokenizerConfig });
}

// Each config is the relevant part of the model's config.json on the HF hub.
describe('readModelConfig', () => {
  it('reads GPT-2 by its own names (n_positions, n_head, n_embd)', () => {
    const c = read({ model_type: 'gpt2', n_positions: 1024, n_ctx: 1024, n_head: 12, n_embd: 768, bos_token_id: 50256, eos_token_id: 50256 });
    expect(c).toMatchObject({
      contextLength: 1024, contextLengthSource: 'config.json n_positions',
      attentionHeads: 12, kvHeads: 12, headDim: 64, eosTokenIds: [50256], bosTokenId: 50256,
    });
    // GPT-2's names only: a Llama-style key in a gpt2 config is not what transformers reads either.
    expect(read({ model_type: 'gpt2', num_attention_heads: 12, hidden_size: 768 })).toMatchObject({ attentionHeads: undefined, headDim: undefined });
  });

  it.each([
    ['llama', { num_attention_heads: 32, num_key_value_heads: 8, hidden_size: 4096, max_position_embeddings: 131072 }, 32, 8, 128, 131072],
    ['mistral', { num_attention_heads: 32, num_key_value_heads: 8, hidden_size: 4096, max_position_embeddings: 32768 }, 32, 8, 128, 32768],
    ['qwen2', { num_attention_heads: 14, num_key_value_heads: 2, hidden_size: 896, max_position_embeddings: 32768 }, 14, 2, 64, 32768],
    ['phi3', { num_attention_heads: 32, num_key_value_heads: 32, hidden_size: 3072, max_position_embeddings: 4096 }, 32, 32, 96, 4096],
    // Gemma's head_dim (256) is not hidden_size / heads (3072 / 16 = 192).
    ['gemma', { num_attention_heads: 16, num_key_value_heads: 16, hidden_size: 3072, head_dim: 256, max_position_embeddings: 8192 }, 16, 16, 256, 8192],
  ])('reads %s: heads, KV heads (grouped-query attention), head size, context', (modelType, config, heads, kvHeads, headDim, context) => {
    expect(read({ model_type: modelType, ...config })).toMatchObject({
      modelType, attentionHeads: heads, kvHeads, headDim, contextLength: context, contextLengthSource: 'config.json max_position_embeddings',
    });
  });

  it('gives every head its own KV when num_key_value_heads is absent, as transformers does', () => {
    expect(read({ model_type: 'llama', num_attention_heads: 8, hidden_size: 512 })).toMatchObject({ kvHeads: 8, headDim: 64 });
  });

  it('tries every known name for a model_type it has no table for', () => {
    expect(read({ model_type: 'falcon', n_head: 8, n_head_kv: 1, hidden_size: 512, seq_length: 2048 })).toMatchObject({
      attentionHeads: 8, kvHeads: 1, headDim: 64, contextLength: 2048, contextLengthSource: 'config.json seq_length',
    });
  });

  it('takes the context from the tokenizer config when config.json has none, ignoring "no limit" values', () => {
    expect(read({}, {}, { model_max_length: 512 })).toMatchObject({ contextLength: 512, contextLengthSource: 'tokenizer_config.json model_max_length' });
    expect(read({}, {}, { model_max_length: 1e30 })).toMatchObject({ contextLength: DEFAULT_CONTEXT_LENGTH, contextLengthSource: 'default' });
  });

  it('ends on every EOS id of generation_config.json and config.json; BOS from generation_config.json first', () => {
    // Llama 3 Instruct: generation_config lists <|end_of_text|> and <|eot_id|>, config.json only the first.
    const c = read({ model_type: 'llama', eos_token_id: 128001, bos_token_id: 128000 }, { eos_token_id: [128001, 128009], bos_token_id: 128000 });
    expect([...c.eosTokenIds].sort()).toEqual([128001, 128009]);
    expect(c.bosTokenId).toBe(128000);
    expect(read({ bos_token_id: null, eos_token_id: null })).toMatchObject({ eosTokenIds: [], bosTokenId: undefined });
  });
});
