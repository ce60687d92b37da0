import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ConclaveError } from '@conclave/common';
import { CLEAN_UP_LOOKBACK, cleanUpTokenizationSpaces, stableCleanUpLength } from './clean-up-spaces.js';
import { readModelConfig, type ModelConfig } from './model-config.js';
import type { ModelFiles } from './model-files.js';

export interface ChatMessage {
  role: string;
  content: string;
}

/** Tokenizer, chat template and incremental detokenizer of one model. */
export class TextCodec {
  readonly eosTokenIds: ReadonlySet<number>;

  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly template: Template | undefined,
    private readonly specialTokens: Record<string, string>,
    eosTokenIds: readonly number[],
    /** Where an empty prompt starts; undefined: an empty prompt is refused. */
    readonly bosTokenId: number | undefined,
    /** `clean_up_tokenization_spaces`, on when tokenizer_config.json does not say (tokenizers' default). */
    readonly cleansUpSpaces: boolean,
  ) {
    this.eosTokenIds = new Set(eosTokenIds);
  }

  static fromModelFiles(files: ModelFiles, config: ModelConfig = readModelConfig(files)): TextCodec {
    try {
      const tokenizer = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
      const source = files.chatTemplateFile ?? chatTemplateOf(files.tokenizerConfig);
      const template = source === undefined ? undefined : new Template(source);
      const special: Record<string, string> = {};
      for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
        const value = tokenName(files.tokenizerConfig[key]);
        if (value !== undefined) special[key] = value;
      }
      const idOf = (name: string | undefined): number | undefined => (name === undefined ? undefined : tokenizer.token_to_id(name));
      const eos = new Set(config.eosTokenIds);
      const eosId = idOf(special['eos_token']);
      if (eosId !== undefined) eos.add(eosId);
      const cleanUp = files.tokenizerConfig['clean_up_tokenization_spaces'];
      return new TextCodec(
        tokenizer,
        template,
        special,
        [...eos],
        config.bosTokenId ?? idOf(special['bos_token']),
        typeof cleanUp === 'boolean' ? cleanUp : true,
      );
    } catch (cause) {
      throw new ConclaveError('MODEL-LOAD-107', {
        detail: cause instanceof Error ? cause.message : String(cause),
        data: { dir: files.dir },
        cause,
      });
    }
  }

  /** A completion prompt; an empty one starts from BOS when the model has one, as HF generate() does. */
  encodePrompt(prompt: string): number[] {
    const ids = this.tokenizer.encode(prompt).ids;
    return ids.length === 0 && this.bosTokenId !== undefined ? [this.bosTokenId] : ids;
  }

  /** Renders the chat template; the template carries its own special tokens. */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    if (!this.template) throw new ConclaveError('MODEL-REQ-211', { data: { field: 'messages' } });
    const text = this.template.render({ messages, add_generation_prompt: true, ...this.specialTokens });
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /** The tokenizer's own decode: special tokens skipped, its clean-up setting honoured. */
  decode(ids: readonly number[]): string {
    // tokenizers.js throws on an empty list.
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: true, clean_up_tokenization_spaces: this.cleansUpSpaces });
  }

  /** The decode before clean-up, which the stream decoder applies itself. */
  decodeRaw(ids: readonly number[]): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  /** A detokenizer that turns generated ids into text deltas; `context` is the prompt's ids. */
  streamDecoder(context: readonly number[] = []): StreamDecoder {
    return new StreamDecoder(this, context);
  }
}

/** Prompt tokens a stream decoder starts from, as vLLM does: enough for the decoder to place the first space. */
const CONTEXT_TOKENS = 5;

/** What a decode yields for bytes that do not (yet) form a whole UTF-8 character. */
const REPLACEMENT_CHAR = '\uFFFD';

/**
 * Turns generated ids, one at a time, into text deltas whose concatenation is
 * the tokenizer's decode of the ids (after the prompt's last tokens, so a
 * decoder that drops the leading space of a text keeps the first one of the
 * completion). Two things are held back until they are final:
 * - bytes of an unfinished UTF-8 character (a decode ending in U+FFFD);
 * - with clean-up on, the end of the text that a later token could still change
 *   (`" "` then `"."` cleans up to `"."`).
 * Each step decodes only a short window (as TGI does), so it costs O(1) in the
 * length of the text. `finish()` releases whatever is still held back.
 */
export class StreamDecoder {
  private readonly ids: number[];
  private prefixOffset = 0;
  private readOffset: number;
  /** Raw text (before clean-up) decoded but not returned yet. */
  private held = '';
  /** The last CLEAN_UP_LOOKBACK characters of the raw text returned so far. */
  private returnedTail = '';

  constructor(
    private readonly codec: TextCodec,
    context: readonly number[] = [],
  ) {
    this.ids = context.slice(-CONTEXT_TOKENS);
    this.readOffset = this.ids.length;
  }

  push(id: number): string {
    this.ids.push(id);
    const { prefix, full } = this.window();
    if (full.length <= prefix.length || full.endsWith(REPLACEMENT_CHAR)) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return this.release(full.slice(prefix.length), false);
  }

  /** The rest of the text: an unfinished character decodes as U+FFFD, as in a whole decode. */
  finish(): string {
    const { prefix, full } = this.window();
    this.prefixOffset = this.readOffset = this.ids.length;
    return this.release(full.length > prefix.length ? full.slice(prefix.length) : '', true);
  }

  private window(): { prefix: string; full: string } {
    return {
      prefix: this.codec.decodeRaw(this.ids.slice(this.prefixOffset, this.readOffset)),
      full: this.codec.decodeRaw(this.ids.slice(this.prefixOffset)),
    };
  }

  private release(raw: string, final: boolean): string {
    if (!this.codec.cleansUpSpaces) return raw;
    const text = this.held + raw;
    const cut = final ? text.length : stableCleanUpLength(this.returnedTail, text);
    const ready = text.slice(0, cut);
    this.held = text.slice(cut);
    this.returnedTail = (this.returnedTail + ready).slice(-CLEAN_UP_LOOKBACK);
    return cleanUpTokenizationSpaces(ready);
  }
}

/** tokenizer_config.json's template: a string, or named templates of which `default` is the chat one. */
function chatTemplateOf(tokenizerConfig: Record<string, unknown>): string | undefined {
  const value = tokenizerConfig['chat_template'];
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find((t: unknown) => (t as { name?: unknown } | null)?.name === 'default') as { template?: unknown } | undefined;
    if (typeof named?.template === 'string') return named.template;
  }
  return undefined;
}

function tokenName(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}
