// Builds the embedded DEMO model: a tiny deterministic decoder and its tokenizer,
// laid out as HF optimum exports a model directory. It runs with plain `node`
// before TypeScript is compiled (the package's `prebuild`), so it is plain ESM.
//
// The "model" is hand-set, not trained: logits = bigram(current word) minus a
// penalty for words seen recently, where "recently" comes from one attention
// head whose keys grow with position. The attention makes the KV cache matter
// (a wrong cache changes the text), and the bigram table makes the text readable.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** The demo model's public name; everything that shows it says "demo". */
export const DEMO_MODEL_ID = 'conclave-demo';

const CORPUS = [
  'this is the conclave demo model .',
  'it is a tiny decoder built by a script in the repository .',
  'it knows only a few words and puts them in a fixed order .',
  'the text is deterministic so tests can check every token .',
  'pass a model directory to serve a real model instead .',
];

const SPECIAL = ['[PAD]', '[UNK]', '<|end|>', '<|system|>', '<|user|>', '<|assistant|>'];
const PAD_ID = 0;
const UNK_ID = 1;
const EOS_ID = 2;
const MAX_POSITIONS = 2048;
/** How much a recently seen word is penalised, in logits. */
const REPEAT_PENALTY = 2.5;
/** Attention score per position step: larger means "recent" is shorter. */
const RECENCY = 0.6;

function vocabulary() {
  const words = [];
  for (const line of CORPUS) {
    for (const w of line.split(' ')) if (!words.includes(w)) words.push(w);
  }
  return [...SPECIAL, ...words];
}

function bigramLogits(vocab) {
  const V = vocab.length;
  const id = new Map(vocab.map((w, i) => [w, i]));
  const counts = Array.from({ length: V }, () => new Float64Array(V));
  const text = CORPUS.join(' ').split(' ');
  for (let i = 0; i + 1 < text.length; i++) counts[id.get(text[i])][id.get(text[i + 1])] += 1;
  // The last '.' of the corpus ends the text: that is where EOS comes from.
  counts[id.get('.')][EOS_ID] += 1.8;
  const startId = id.get('this');
  const logits = new Float32Array(V * V);
  for (let a = 0; a < V; a++) {
    const row = counts[a];
    let total = 0;
    for (const c of row) total += c;
    for (let b = 0; b < V; b++) {
      // Words with no successor (special tokens, unknown words) start the text.
      const c = total > 0 ? row[b] : b === startId ? 1 : 0;
      logits[a * V + b] = c > 0 ? Math.log(c) : -6;
    }
  }
  // Never generate padding, unknowns or role markers.
  for (let a = 0; a < V; a++) {
    for (const b of [PAD_ID, UNK_ID, 3, 4, 5]) logits[a * V + b] = -30;
  }
  return logits;
}

function tensor(name, dims, data, dataType = onnx.TensorProto.DataType.FLOAT) {
  const bytes =
    dataType === onnx.TensorProto.DataType.INT64
      ? new Uint8Array(BigInt64Array.from(data, (x) => BigInt(x)).buffer)
      : new Uint8Array(Float32Array.from(data).buffer);
  return { name, dims, dataType, rawData: bytes };
}

function valueInfo(name, elemType, dims) {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

function node(opType, inputs, outputs, attributes = {}) {
  const attribute = Object.entries(attributes).map(([name, value]) => {
    if (Array.isArray(value)) return { name, ints: value, type: onnx.AttributeProto.AttributeType.INTS };
    if (Number.isInteger(value)) return { name, i: value, type: onnx.AttributeProto.AttributeType.INT };
    return { name, f: value, type: onnx.AttributeProto.AttributeType.FLOAT };
  });
  return { opType, input: inputs, output: outputs, name: `${opType}_${outputs[0]}`, attribute };
}

function weights(V, hiddenPad) {
  // One-hot word, a constant 1, a position feature, then `hiddenPad` zero dimensions
  // that change nothing but the size (the benchmark's large variant).
  const D = V + 2 + hiddenPad;
  const E = new Float32Array(V * D);
  for (let t = 0; t < V; t++) {
    E[t * D + t] = 1;
    E[t * D + V] = 1;
  }
  const PE = new Float32Array(MAX_POSITIONS * D);
  for (let p = 0; p < MAX_POSITIONS; p++) PE[p * D + V + 1] = p / 16;
  const Wq = new Float32Array(D * D);
  Wq[V * D + (V + 1)] = RECENCY * 16; // q = constant dim -> position dim
  const Wk = new Float32Array(D * D);
  Wk[(V + 1) * D + (V + 1)] = 1; // k = position feature
  const Wv = new Float32Array(D * D);
  for (let t = 0; t < V; t++) Wv[t * D + t] = 1; // v = the word, one-hot
  const bigram = bigramLogits(vocabulary());
  const Wout = new Float32Array(D * V);
  Wout.set(bigram, 0);
  const Wa = new Float32Array(D * V);
  for (let t = 0; t < V; t++) Wa[t * V + t] = -REPEAT_PENALTY;
  return { D, E, PE, Wq, Wk, Wv, Wout, Wa };
}

function graph(V, withCache, hiddenPad) {
  const F = onnx.TensorProto.DataType.FLOAT;
  const I64 = onnx.TensorProto.DataType.INT64;
  const BOOL = onnx.TensorProto.DataType.BOOL;
  const w = weights(V, hiddenPad);
  const D = w.D;
  const initializer = [
    tensor('embed', [V, D], w.E),
    tensor('pos_embed', [MAX_POSITIONS, D], w.PE),
    tensor('wq', [D, D], w.Wq),
    tensor('wk', [D, D], w.Wk),
    tensor('wv', [D, D], w.Wv),
    tensor('w_out', [D, V], w.Wout),
    tensor('w_attn', [D, V], w.Wa),
    tensor('axis1', [1], [1], I64),
    tensor('axes12', [2], [1, 2], I64),
    tensor('zero', [], [0], I64),
    tensor('one', [], [1], I64),
    tensor('two', [], [2], I64),
    tensor('neg_inf', [], [-1e9]),
  ];
  const nodes = [
    node('Gather', ['embed', 'input_ids'], ['tok']),
    node('Gather', ['pos_embed', 'position_ids'], ['pos']),
    node('Add', ['tok', 'pos'], ['h']),
    node('MatMul', ['h', 'wq'], ['q']),
    node('MatMul', ['h', 'wk'], ['k']),
    node('MatMul', ['h', 'wv'], ['v']),
    node('Unsqueeze', ['q', 'axis1'], ['q4']),
    node('Unsqueeze', ['k', 'axis1'], ['k4']),
    node('Unsqueeze', ['v', 'axis1'], ['v4']),
  ];
  const keys = withCache ? 'present.0.key' : 'k4';
  const values = withCache ? 'present.0.value' : 'v4';
  if (withCache) {
    nodes.push(node('Concat', ['past_key_values.0.key', 'k4'], ['present.0.key'], { axis: 2 }));
    nodes.push(node('Concat', ['past_key_values.0.value', 'v4'], ['present.0.value'], { axis: 2 }));
  }
  nodes.push(
    node('Transpose', [keys], ['kt'], { perm: [0, 1, 3, 2] }),
    node('MatMul', ['q4', 'kt'], ['scores']),
    node('Shape', [keys], ['k_shape']),
    node('Gather', ['k_shape', 'two'], ['total_len']),
    node('Shape', ['q4'], ['q_shape']),
    node('Gather', ['q_shape', 'two'], ['query_len']),
    node('Sub', ['total_len', 'query_len'], ['past_len']),
    node('Range', ['zero', 'total_len', 'one'], ['key_index']),
    node('Range', ['past_len', 'total_len', 'one'], ['query_index']),
    node('Unsqueeze', ['query_index', 'axis1'], ['query_col']),
    node('LessOrEqual', ['key_index', 'query_col'], ['causal']),
    node('Cast', ['attention_mask'], ['mask_bool'], { to: BOOL }),
    node('Unsqueeze', ['mask_bool', 'axes12'], ['mask4']),
    node('And', ['causal', 'mask4'], ['allowed']),
    node('Where', ['allowed', 'scores', 'neg_inf'], ['masked']),
    node('Softmax', ['masked'], ['probs'], { axis: -1 }),
    node('MatMul', ['probs', values], ['attn4']),
    node('Squeeze', ['attn4', 'axis1'], ['attn']),
    node('MatMul', ['tok', 'w_out'], ['logits_bigram']),
    node('MatMul', ['attn', 'w_attn'], ['logits_attn']),
    node('Add', ['logits_bigram', 'logits_attn'], ['logits']),
  );
  const input = [
    valueInfo('input_ids', I64, ['batch_size', 'sequence_length']),
    valueInfo('attention_mask', I64, ['batch_size', 'total_sequence_length']),
    valueInfo('position_ids', I64, ['batch_size', 'sequence_length']),
  ];
  const output = [valueInfo('logits', F, ['batch_size', 'sequence_length', V])];
  if (withCache) {
    input.push(valueInfo('past_key_values.0.key', F, ['batch_size', 1, 'past_sequence_length', D]));
    input.push(valueInfo('past_key_values.0.value', F, ['batch_size', 1, 'past_sequence_length', D]));
    output.push(valueInfo('present.0.key', F, ['batch_size', 1, 'total_sequence_length', D]));
    output.push(valueInfo('present.0.value', F, ['batch_size', 1, 'total_sequence_length', D]));
  }
  return { name: 'conclave_demo_decoder', node: nodes, initializer, input, output, D };
}

/** Moves every initializer's bytes into one side file, as large exports do. */
function externalize(initializers, dataFile) {
  const chunks = [];
  let offset = 0;
  // Small constants stay inline, as onnx's save_model(size_threshold=1024) leaves them.
  for (const t of initializers.filter((i) => i.rawData.length >= 1024)) {
    const bytes = t.rawData;
    // Offsets aligned to 4 KiB, as onnx's save_model does, so the runtime may map them.
    const pad = (4096 - (offset % 4096)) % 4096;
    if (pad) chunks.push(new Uint8Array(pad));
    offset += pad;
    chunks.push(bytes);
    t.externalData = [
      { key: 'location', value: dataFile },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(bytes.length) },
    ];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    delete t.rawData;
    offset += bytes.length;
  }
  return Buffer.concat(chunks);
}

function tokenizerJson(vocab) {
  const added = SPECIAL.map((content, id) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((w, i) => [w, i])),
    },
  };
}

const CHAT_TEMPLATE =
  "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} {% endfor %}" +
  '{% if add_generation_prompt %}<|assistant|>{% endif %}';

/**
 * Writes the demo model directory.
 * @param {string} dir target directory
 * @param {{ cache?: boolean, externalData?: boolean, onnxSubdir?: boolean, hiddenPad?: number }} [options]
 *   cache (default true): KV-cache inputs/outputs; externalData (default false): weights in
 *   `model.onnx_data`; onnxSubdir (default true): `onnx/model.onnx` instead of `model.onnx`;
 *   hiddenPad (default 0): extra zero hidden dimensions, only to make the file larger.
 */
export function writeDemoModel(dir, options = {}) {
  const { cache = true, externalData = false, onnxSubdir = true, hiddenPad = 0 } = options;
  const vocab = vocabulary();
  const V = vocab.length;
  const g = graph(V, cache, hiddenPad);
  const onnxDir = onnxSubdir ? join(dir, 'onnx') : dir;
  mkdirSync(onnxDir, { recursive: true });
  if (externalData) {
    writeFileSync(join(onnxDir, 'model.onnx_data'), externalize(g.initializer, 'model.onnx_data'));
  }
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'conclave-demo-builder',
    producerVersion: '1',
    docString: 'DEMO MODEL: a hand-set bigram decoder with one attention head. Not a language model.',
    opsetImport: [{ domain: '', version: 17 }],
    graph: { name: g.name, node: g.node, initializer: g.initializer, input: g.input, output: g.output },
  });
  writeFileSync(join(onnxDir, 'model.onnx'), onnx.ModelProto.encode(model).finish());
  const json = (name, value) => writeFileSync(join(dir, name), `${JSON.stringify(value, null, 2)}\n`);
  json('config.json', {
    _comment: 'DEMO MODEL built by packages/model-server/scripts/build-demo-model.mjs',
    architectures: ['ConclaveDemoForCausalLM'],
    model_type: 'conclave-demo',
    name_or_path: DEMO_MODEL_ID,
    vocab_size: V,
    hidden_size: g.D,
    head_dim: g.D,
    num_hidden_layers: 1,
    num_attention_heads: 1,
    num_key_value_heads: 1,
    max_position_embeddings: MAX_POSITIONS,
    bos_token_id: null,
    eos_token_id: EOS_ID,
    pad_token_id: PAD_ID,
    use_cache: cache,
  });
  json('generation_config.json', { eos_token_id: EOS_ID, pad_token_id: PAD_ID, do_sample: false, max_new_tokens: 64 });
  json('tokenizer.json', tokenizerJson(vocab));
  json('tokenizer_config.json', {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: null,
    eos_token: '<|end|>',
    pad_token: '[PAD]',
    unk_token: '[UNK]',
    model_max_length: MAX_POSITIONS,
    clean_up_tokenization_spaces: true,
    chat_template: CHAT_TEMPLATE,
  });
  writeFileSync(join(dir, 'README.md'), '# conclave-demo (DEMO MODEL)\n\nA tiny hand-set decoder for tests and first runs; it knows 39 words and 6 special tokens.\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(fileURLToPath(import.meta.url), '../../models-built');
  const started = Date.now();
  writeDemoModel(join(root, 'demo'));
  writeDemoModel(join(root, 'demo-no-cache'), { cache: false, onnxSubdir: false });
  writeDemoModel(join(root, 'demo-external-data'), { externalData: true });
  console.log(`model-server prebuild: demo models written to ${root} in ${Date.now() - started} ms`);
}
