import { byteLevelAlphabet, byteLevelChars } from './byte-level.js';

export interface ByteLevelBpeOptions {
  /**
   * Pieces of text that become whole tokens (`' world'`, `'é'`, `'🎉'`), each
   * merged left to right from its bytes, so every prefix of its bytes is a token
   * too: a multi-byte character also has tokens that end inside it.
   */
  pieces: readonly string[];
  /** Special tokens, appended after the vocabulary. @default ['<|endoftext|>'] */
  specialTokens?: readonly string[];
}

export interface BuiltTokenizer {
  /** `tokenizer.json` as HF tokenizers writes it. */
  readonly tokenizerJson: Record<string, unknown>;
  /** Id of every token string, by its text (`' world'`, not `'Ġworld'`); partial characters are not listed. */
  readonly idOf: (text: string) => number;
  readonly vocabSize: number;
}

/**
 * A small GPT-2-style tokenizer: byte-level pre-tokenizer and decoder, a BPE model
 * over the 256 byte characters plus `pieces`. Small enough for property tests that
 * decode thousands of random id sequences; same decoding rules as GPT-2's.
 */
export function byteLevelBpeTokenizer(options: ByteLevelBpeOptions): BuiltTokenizer {
  const vocab = new Map<string, number>();
  const add = (token: string): void => {
    if (!vocab.has(token)) vocab.set(token, vocab.size);
  };
  for (const c of byteLevelAlphabet()) add(c);
  const merges: string[] = [];
  for (const piece of options.pieces) {
    const chars = [...byteLevelChars(piece)];
    let left = chars[0] ?? '';
    for (const right of chars.slice(1)) {
      const merged = left + right;
      if (!vocab.has(merged)) {
        merges.push(`${left} ${right}`);
        add(merged);
      }
      left = merged;
    }
  }
  const specials = options.specialTokens ?? ['<|endoftext|>'];
  const specialIds = specials.map((content) => {
    add(content);
    return vocab.get(content) as number;
  });
  return {
    tokenizerJson: byteLevelTokenizerJson(Object.fromEntries(vocab), merges, specials.map((content, i) => ({ id: specialIds[i] as number, content }))),
    idOf: (text) => {
      const id = vocab.get(specials.includes(text) ? text : byteLevelChars(text));
      if (id === undefined) throw new Error(`no token for ${JSON.stringify(text)}`);
      return id;
    },
    vocabSize: vocab.size,
  };
}

/** `tokenizer.json` of a byte-level BPE tokenizer, in the shape GPT-2's has on the HF hub. */
export function byteLevelTokenizerJson(
  vocab: Record<string, number>,
  merges: readonly string[],
  specials: ReadonlyArray<{ id: number; content: string }>,
): Record<string, unknown> {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map(({ id, content }) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}
