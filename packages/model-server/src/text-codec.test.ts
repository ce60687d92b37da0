import { describe, expect, it } from 'vitest';
import { Tokenizer } from '@huggingface/tokenizers';
import { byteLevelBpeTokenizer } from '@conclave/testing';
import { DEMO_MODEL_DIR } from './demo-model.js';
import { inspectModelDir, type ModelFiles } from './model-files.js';
import { seededRandom } from './sampler.js';
import { TextCodec } from './text-codec.js';

/** A model directory's files, in memory: the codec reads nothing else. */
function filesWith(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>): ModelFiles {
  return {
    dir: '/in-memory', onnxPath: '/in-memory/model.onnx', externalDataPaths: [], weightBytes: 0,
    config: {}, generationConfig: {}, tokenizerJson, tokenizerConfig, chatTemplateFile: undefined,
  };
}

const bpe = byteLevelBpeTokenizer({
  pieces: ['Hello', ' world', ' again', ' Party', ' n', "'t", "'s", ' é', 'é', '🎉', ' 🎉', ' ?', '!', ' ,', " '"],
});

function codecs(): Array<[string, TextCodec]> {
  return [
    ['byte-level BPE, clean-up on', TextCodec.fromModelFiles(filesWith(bpe.tokenizerJson, { clean_up_tokenization_spaces: true }))],
    ['byte-level BPE, clean-up off', TextCodec.fromModelFiles(filesWith(bpe.tokenizerJson, { clean_up_tokenization_spaces: false }))],
    ['byte-level BPE, clean-up unset', TextCodec.fromModelFiles(filesWith(bpe.tokenizerJson, {}))],
    ['word-level (demo WordPiece)', TextCodec.fromModelFiles(inspectModelDir(DEMO_MODEL_DIR))],
  ];
}

function streamed(codec: TextCodec, ids: readonly number[], context: readonly number[] = []): { deltas: string[]; text: string } {
  const decoder = codec.streamDecoder(context);
  const deltas = ids.map((id) => decoder.push(id));
  deltas.push(decoder.finish());
  return { deltas, text: deltas.join('') };
}

describe('StreamDecoder', () => {
  const ids = ['Hello', ' ', '.', ' world', ' ', ',', ' again'].map(bpe.idOf);

  it('keeps " ." and " ," as the tokenizer decodes them, clean-up on and off', () => {
    const [[, on], [, off], [, unset]] = codecs() as [[string, TextCodec], [string, TextCodec], [string, TextCodec]];
    expect(on.decode(ids)).toBe('Hello. world, again');
    expect(streamed(on, ids).text).toBe('Hello. world, again');
    expect(off.decode(ids)).toBe('Hello . world , again');
    expect(streamed(off, ids).text).toBe('Hello . world , again');
    // tokenizers' default when tokenizer_config.json has no clean_up_tokenization_spaces: on.
    expect(streamed(unset, ids).text).toBe('Hello. world, again');
  });

  it('releases bytes held back for an unfinished character at the end', () => {
    const [[, codec]] = codecs() as [[string, TextCodec]];
    // ' Party', then a space and the first two bytes of 🎉 (F0 9F): cut by max_tokens.
    const partial = bpe.idOf(' 🎉') - 2;
    const tail = [bpe.idOf(' Party'), partial];
    expect(codec.decode(tail)).toBe(' Party \uFFFD');
    const { deltas, text } = streamed(codec, tail);
    expect(text).toBe(' Party \uFFFD');
    expect(deltas.at(-1)).toBe(' \uFFFD');
  });
});

describe('StreamDecoder against one whole decode (property)', () => {
  const demo = inspectModelDir(DEMO_MODEL_DIR);
  const cases: Array<{ name: string; files: ModelFiles; likely: number[] }> = [
    ...[true, false].map((cleanUp) => ({
      name: `byte-level BPE, clean-up ${cleanUp ? 'on' : 'off'}`,
      files: filesWith(bpe.tokenizerJson, { clean_up_tokenization_spaces: cleanUp, eos_token: '<|endoftext|>' }),
      // Uniform ids would rarely put a space before punctuation; half the ids come from here.
      likely: [' ', '.', ',', '?', '!', "'", "'t", "'s", ' n', ' ,', " '", 's', 'é', ' é', '<|endoftext|>']
        .map(bpe.idOf)
        .concat(bpe.idOf('🎉') - 1, bpe.idOf('🎉') - 2, bpe.idOf(' 🎉') - 1),
    })),
    { name: 'word-level (demo WordPiece)', files: demo, likely: [0, 2, 3] },
  ];

  it.each(cases)('$name: the deltas join to the tokenizer\'s own decode, for 2,000 random id sequences', ({ files, likely }) => {
    const codec = TextCodec.fromModelFiles(files);
    // The reference is tokenizers' own decode, with the clean-up setting it reads itself.
    const reference = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
    const decode = (ids: number[]): string => (ids.length === 0 ? '' : reference.decode(ids, { skip_special_tokens: true }));
    const vocabSize = reference.get_vocab().size;
    const specials = new Set(((files.tokenizerJson['added_tokens'] ?? []) as Array<{ id: number }>).map((t) => t.id));
    const random = seededRandom(7);
    const pick = (): number => (random() < 0.5 ? (likely[Math.floor(random() * likely.length)] as number) : Math.floor(random() * vocabSize));
    for (let run = 0; run < 2000; run++) {
      const ids = Array.from({ length: 1 + Math.floor(random() * 30) }, pick);
      const { deltas, text } = streamed(codec, ids);
      expect(text, JSON.stringify({ ids, deltas })).toBe(decode(ids));
      // After a prompt, the completion is what the prompt's decode grows by. The decoder sees only the
      // prompt's last few ids, so the prompt here has no special tokens (which decode to nothing).
      const context = Array.from({ length: Math.floor(random() * 8) }, pick).filter((id) => !specials.has(id));
      const whole = decode([...context, ...ids]);
      const before = decode(context);
      if (whole.startsWith(before) && !before.endsWith('\uFFFD')) {
        expect(streamed(codec, ids, context).text, JSON.stringify({ context, ids })).toBe(whole.slice(before.length));
      }
    }
  });
});
