import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ConclaveError } from '@conclave/common';
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
    eosTokenIds: number[],
  ) {
    this.eosTokenIds = new Set(eosTokenIds);
  }

  static fromModelFiles(files: ModelFiles): TextCodec {
    try {
      const tokenizer = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
      const source = files.tokenizerConfig['chat_template'];
      const template = typeof source === 'string' ? new Template(source) : undefined;
      const special: Record<string, string> = {};
      for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
        const value = tokenName(files.tokenizerConfig[key]);
        if (value !== undefined) special[key] = value;
      }
      const eos = new Set<number>();
      for (const source of [files.generationConfig['eos_token_id'], files.config['eos_token_id']]) {
        for (const id of [source].flat()) if (typeof id === 'number') eos.add(id);
      }
      const eosName = special['eos_token'];
      const eosId = eosName === undefined ? undefined : tokenizer.token_to_id(eosName);
      if (eosId !== undefined) eos.add(eosId);
      return new TextCodec(tokenizer, template, special, [...eos]);
    } catch (cause) {
      throw new ConclaveError('MODEL-LOAD-107', {
        detail: cause instanceof Error ? cause.message : String(cause),
        data: { dir: files.dir },
        cause,
      });
    }
  }

  encodePrompt(prompt: string): number[] {
    return this.tokenizer.encode(prompt).ids;
  }

  /** Renders the chat template; the template carries its own special tokens. */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    if (!this.template) {
      throw new ConclaveError('MODEL-REQ-203', { detail: 'this model has no chat template; use /v1/completions' });
    }
    const text = this.template.render({ messages, add_generation_prompt: true, ...this.specialTokens });
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    // tokenizers.js throws on an empty list.
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: true });
  }

  /** A detokenizer that turns a growing id list into text deltas. */
  streamDecoder(): StreamDecoder {
    return new StreamDecoder(this);
  }
}

/**
 * Decodes only a short window (as TGI does) so each step costs O(1) in the text
 * length; a delta ending in U+FFFD is an incomplete UTF-8 sequence and waits.
 */
export class StreamDecoder {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly codec: TextCodec) {}

  push(id: number): string {
    this.ids.push(id);
    const prefix = this.codec.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.codec.decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return full.slice(prefix.length);
    }
    return '';
  }
}

function tokenName(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}
