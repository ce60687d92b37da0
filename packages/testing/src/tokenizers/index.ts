export { byteLevelAlphabet, byteLevelChars } from './byte-level.js';
export { byteLevelBpeTokenizer, byteLevelTokenizerJson, type BuiltTokenizer, type ByteLevelBpeOptions } from './byte-level-bpe.js';
export { GPT2_END_OF_TEXT_ID, gpt2Tokenizer, type Gpt2TokenizerFiles } from './gpt2-tokenizer.js';
