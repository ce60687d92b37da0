/**
 * HF's `clean_up_tokenization` (transformers' tokenization_utils_base and
 * tokenizers.js alike): drops the space a word-level or byte-level decode leaves
 * before punctuation and English contractions. Applied after the decoder, to the
 * whole text, when `clean_up_tokenization_spaces` is on.
 */
export function cleanUpTokenizationSpaces(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/** Every pattern above starts with a space and is at most this long. */
const LONGEST_PATTERN = 4;

/** How much of the text already cleaned up `stableCleanUpLength` needs to see. */
export const CLEAN_UP_LOOKBACK = LONGEST_PATTERN - 1;

/**
 * The longest prefix of `text` whose clean-up no later text can change, given
 * `before` (the last CLEAN_UP_LOOKBACK characters of the raw text that came
 * before it). A pattern that straddles a cut would start within the
 * LONGEST_PATTERN − 1 characters before it, and every pattern starts with a
 * space; so a cut with no space in those characters is safe. The replacements
 * only delete spaces, so those characters survive the earlier replacements of
 * the chain and keep the cut safe for the later ones: the clean-up of the
 * pieces, joined, is the clean-up of the whole.
 */
export function stableCleanUpLength(before: string, text: string): number {
  const joined = before + text;
  for (let cut = text.length; cut > 0; cut--) {
    const end = before.length + cut;
    if (!joined.slice(Math.max(0, end - CLEAN_UP_LOOKBACK), end).includes(' ')) return cut;
  }
  return 0;
}
