import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tokenizer } from '@huggingface/tokenizers';
import OpenAI from 'openai';
import { captureLogger } from '@conclave/common';
import {
  byteLevelBpeTokenizer, byteLevelChars, GPT2_END_OF_TEXT_ID, gpt2Tokenizer, scriptedDecoderModel,
  type ScriptedDecoderOptions,
} from '@conclave/testing';
import { startModelServer, type ModelServerHandle } from './model-server.js';

// Model directories the server did not make, in HF optimum's text-generation-with-past layout: a
// GPT-2-style decoder with GPT-2's real byte-level BPE tokenizer, and a Llama-style one (grouped-query
// attention, position_ids). Both declare every KV-cache dim symbolic, so the server must take the head
// count and size from config.json by that model_type's names. Each decoder emits a script: the
// token at each position is fixed, so the expected text is known token for token.

const root = mkdtempSync(join(tmpdir(), 'conclave-real-dirs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface ModelDir {
  onnx: Omit<ScriptedDecoderOptions, 'vocabSize'>;
  vocabSize: number;
  config: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

function writeModelDir(name: string, d: ModelDir): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.onnx'), scriptedDecoderModel({ ...d.onnx, vocabSize: d.vocabSize }));
  const json = (file: string, value: unknown): void => writeFileSync(join(dir, file), JSON.stringify(value));
  json('config.json', d.config);
  json('generation_config.json', d.generationConfig);
  json('tokenizer.json', d.tokenizerJson);
  json('tokenizer_config.json', d.tokenizerConfig);
  return dir;
}

async function serve(dir: string): Promise<ModelServerHandle> {
  const server = await startModelServer({ modelDir: dir, port: 0, logger: captureLogger('MODEL').logger });
  await server.ready;
  return server;
}

async function streamedText(client: OpenAI, model: string, prompt: string, maxTokens: number): Promise<string> {
  const stream = await client.completions.create({ model, prompt, max_tokens: maxTokens, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  return text;
}

describe('a GPT-2-style directory with GPT-2\'s byte-level BPE tokenizer', () => {
  const gpt2 = gpt2Tokenizer();
  const encoder = new Tokenizer(gpt2.tokenizerJson, gpt2.tokenizerConfig);
  const idOf = (piece: string): number => {
    const id = encoder.token_to_id(byteLevelChars(piece));
    if (id === undefined) throw new Error(`GPT-2 has no token ${piece}`);
    return id;
  };
  const prompt = 'The model says';
  const promptIds = encoder.encode(prompt).ids;
  // "Hello" " " "." " world" " " "," " again", then the first bytes of " 🎉" and the rest of the emoji.
  const script = ['Hello', ' ', '.', ' world', ' ', ',', ' again'].map(idOf);
  const emoji = [idOf(' Party'), encoder.token_to_id('ĠðŁ') as number, encoder.token_to_id('İ') as number, encoder.token_to_id('ī') as number];
  const model = 'gpt2-tiny';
  let server: ModelServerHandle;
  let emojiServer: ModelServerHandle;
  let client: OpenAI;

  function gpt2Dir(name: string, tokens: number[]): string {
    return writeModelDir(name, {
      // The prediction at the prompt's last position is the first generated token.
      onnx: { architecture: 'gpt2', script: tokens, scriptStart: promptIds.length - 1, fillerId: GPT2_END_OF_TEXT_ID },
      vocabSize: 50257,
      // GPT-2's names, as on the hub: no num_attention_heads, hidden_size or max_position_embeddings.
      config: {
        model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_layer: 2, n_head: 4, n_embd: 32, n_positions: 128, n_ctx: 128,
        vocab_size: 50257, bos_token_id: GPT2_END_OF_TEXT_ID, eos_token_id: GPT2_END_OF_TEXT_ID, use_cache: true,
      },
      generationConfig: { bos_token_id: GPT2_END_OF_TEXT_ID, eos_token_id: GPT2_END_OF_TEXT_ID },
      tokenizerJson: gpt2.tokenizerJson,
      tokenizerConfig: gpt2.tokenizerConfig,
    });
  }

  beforeAll(async () => {
    server = await serve(gpt2Dir(model, script));
    emojiServer = await serve(gpt2Dir('gpt2-emoji', emoji));
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await emojiServer?.close();
  });

  it('loads with the context and KV dims of GPT-2\'s config keys', async () => {
    const card = await (await fetch(`${server.url}/v1/models/${model}`)).json();
    expect(card).toMatchObject({ max_model_len: 128, conclave: { state: 'ready', modelType: 'gpt2', contextLengthSource: 'config.json n_positions' } });
  });

  it('answers " ." and " ," exactly as the tokenizer decodes them, streamed and not', async () => {
    // The tokenizer's own decode: GPT-2's tokenizer_config sets clean_up_tokenization_spaces.
    const expected = encoder.decode(script, { skip_special_tokens: true });
    expect(expected).toBe('Hello. world, again');
    const plain = await client.completions.create({ model, prompt, max_tokens: 20 });
    expect(plain.choices[0]).toMatchObject({ text: expected, finish_reason: 'stop' });
    expect(plain.usage?.completion_tokens).toBe(script.length);
    expect(await streamedText(client, model, prompt, 20)).toBe(expected);
  });

  it('honours clean_up_tokenization_spaces: false', async () => {
    const dir = gpt2Dir('gpt2-no-clean-up', script);
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...gpt2.tokenizerConfig, clean_up_tokenization_spaces: false }));
    const raw = await serve(dir);
    try {
      const rawClient = new OpenAI({ baseURL: `${raw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const plain = await rawClient.completions.create({ model: 'gpt2-no-clean-up', prompt, max_tokens: 20 });
      expect(plain.choices[0]?.text).toBe('Hello . world , again');
      expect(await streamedText(rawClient, 'gpt2-no-clean-up', prompt, 20)).toBe('Hello . world , again');
    } finally {
      await raw.close();
    }
  });

  it('releases the bytes of a character cut by max_tokens, and the space that shares their token', async () => {
    const emojiClient = new OpenAI({ baseURL: `${emojiServer.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const cut = encoder.decode(emoji.slice(0, 2), { skip_special_tokens: true });
    expect(cut).toBe(' Party \uFFFD');
    const plain = await emojiClient.completions.create({ model: 'gpt2-emoji', prompt, max_tokens: 2 });
    expect(plain.choices[0]).toMatchObject({ text: cut, finish_reason: 'length' });
    expect(await streamedText(emojiClient, 'gpt2-emoji', prompt, 2)).toBe(cut);
    // With the whole character the text is whole.
    expect((await emojiClient.completions.create({ model: 'gpt2-emoji', prompt, max_tokens: 4 })).choices[0]?.text).toBe(' Party 🎉');
  });

  it('starts an empty prompt from BOS (<|endoftext|>), as OpenAI\'s completions do', async () => {
    const empty = await client.completions.create({ model, prompt: '', max_tokens: 3 });
    expect(empty.usage?.prompt_tokens).toBe(1);
  });

  it('refuses chat on a model without a chat template with MODEL-REQ-211, naming messages', async () => {
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: { code: string; param: string | null; message: string } };
    expect(error).toMatchObject({ code: 'MODEL-REQ-211', param: 'messages', type: 'invalid_request_error' });
    expect(error.message).toContain('no chat template');
    // The same server keeps serving completions.
    expect((await client.completions.create({ model, prompt, max_tokens: 3 })).choices[0]?.text).toBe('Hello.');
  });
});

describe('a Llama-style directory: grouped-query attention, position_ids, symbolic KV dims', () => {
  const specials = ['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'];
  const bpe = byteLevelBpeTokenizer({ pieces: ['Hi', ' there', '!', ' I', ' am', ' Llama', 'user', 'assistant', '\n\n'], specialTokens: specials });
  const chatTemplate =
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n" +
    "{{ message['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
  const tokenizerConfig = {
    bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', clean_up_tokenization_spaces: true,
    model_max_length: 1_000_000, chat_template: chatTemplate, tokenizer_class: 'PreTrainedTokenizerFast',
  };
  const encoder = new Tokenizer(bpe.tokenizerJson, tokenizerConfig);
  const messages = [{ role: 'user' as const, content: 'Hi there' }];
  // What the server sends the model: the rendered template, encoded without adding special tokens.
  const chatPromptIds = encoder.encode(
    `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`,
    { add_special_tokens: false },
  ).ids;
  // The answer ends with <|eot_id|>, which only generation_config.json names as an EOS.
  const script = ['Hi', '!', ' I', ' am', ' Llama', '<|eot_id|>'].map(bpe.idOf);
  const llamaConfig = {
    model_type: 'llama', architectures: ['LlamaForCausalLM'], num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
    hidden_size: 32, max_position_embeddings: 128, vocab_size: bpe.vocabSize,
    bos_token_id: bpe.idOf('<|begin_of_text|>'), eos_token_id: bpe.idOf('<|end_of_text|>'),
  };
  function llamaDir(name: string, config: Record<string, unknown>): string {
    return writeModelDir(name, {
      onnx: { architecture: 'llama', heads: 4, kvHeads: 2, script, scriptStart: chatPromptIds.length - 1, fillerId: bpe.idOf('<|end_of_text|>') },
      vocabSize: bpe.vocabSize,
      config,
      generationConfig: { bos_token_id: llamaConfig.bos_token_id, eos_token_id: [llamaConfig.eos_token_id, bpe.idOf('<|eot_id|>')] },
      tokenizerJson: bpe.tokenizerJson,
      tokenizerConfig,
    });
  }

  it('loads from its config and answers a chat, stopping at the EOS that generation_config.json adds', async () => {
    const server = await serve(llamaDir('llama-tiny', llamaConfig));
    try {
      const card = await (await fetch(`${server.url}/v1/models/llama-tiny`)).json();
      expect(card).toMatchObject({ max_model_len: 128, conclave: { modelType: 'llama', contextLengthSource: 'config.json max_position_embeddings' } });
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const chat = await client.chat.completions.create({ model: 'llama-tiny', messages, max_tokens: 20 });
      expect(chat.choices[0]).toMatchObject({ message: { content: 'Hi! I am Llama' }, finish_reason: 'stop' });
      expect(chat.usage).toMatchObject({ prompt_tokens: chatPromptIds.length, completion_tokens: 5 });
    } finally {
      await server.close();
    }
  });

  it('fails to load, with a code, when config.json does not give the KV head count the model needs', async () => {
    // Without num_key_value_heads every head has its own KV (transformers' default): 4, not the model's 2.
    const { num_key_value_heads: _, ...withoutKvHeads } = llamaConfig;
    const server = await startModelServer({ modelDir: llamaDir('llama-no-kv-heads', withoutKvHeads), port: 0, logger: captureLogger('MODEL').logger });
    try {
      await expect(server.ready).rejects.toMatchObject({ code: 'MODEL-LOAD-106' });
    } finally {
      await server.close();
    }
  });
});
