import type { onnx as proto } from 'onnx-proto';
import { hostTensor } from '../onnx/host-tensor.js';
import { encodeModel, initializer, node, onnx, spec } from '../onnx/onnx-graph.js';
import { seededRandom } from '../onnx/seeded-random.js';

export type DecoderArchitecture = 'gpt2' | 'llama';

export interface ScriptedDecoderOptions {
  architecture: DecoderArchitecture;
  /** Logit width, e.g. 50257 for GPT-2's tokenizer. */
  vocabSize: number;
  /** The token the model emits as its prediction *at* absolute position p is `script[p - scriptStart]`. */
  script: readonly number[];
  /** Absolute position whose logits predict `script[0]` (a test sets it to promptLength - 1). */
  scriptStart: number;
  /** Emitted at positions before `scriptStart` and after the script ends. */
  fillerId: number;
  /** @default 2 */
  layers?: number;
  /** Query heads. @default 4 */
  heads?: number;
  /** KV heads, llama only (grouped-query attention); gpt2 always has `heads`. Must divide `heads`. @default 2 */
  kvHeads?: number;
  /** @default 8 */
  headDim?: number;
  /** Positions the script table and the position embedding cover; later positions fail to run. @default 128 */
  maxPositions?: number;
}

/** What the scripted token adds to its logit; the attention term stays below 0.5, so argmax is the script. */
const SCRIPT_LOGIT = 20;
/** Embedding entries are uniform in ±EMBED_RANGE. */
const EMBED_RANGE = 0.5;
const MASKED_SCORE = -1e9;
const SEED: Readonly<Record<DecoderArchitecture, number>> = { gpt2: 2, llama: 3 };

/**
 * A tiny decoder in the layout HF optimum exports for `text-generation-with-past`, whose
 * greedy output is `script` from `scriptStart` on and `fillerId` elsewhere. It does real
 * multi-head causal attention over the KV cache (random weights), and its logits are
 * `20·OneHot(scriptTokenAt(position)) + attention term`, the attention term being the final
 * layer-normed hidden state times the tied embedding, scaled so that |term| < 0.5.
 *
 * Inputs: `input_ids`, `attention_mask` (past + current), llama also `position_ids`, and
 * `past_key_values.{i}.key|value`; outputs `logits` and `present.{i}.key|value`. KV dims are
 * all symbolic, so heads and head size come from config.json; at run time KV tensors are
 * `[batch, kvHeads, past, headDim]`. gpt2 takes positions as past length + range(seq),
 * llama from `position_ids`; the causal mask is in cache coordinates for both.
 */
export function scriptedDecoderModel(o: ScriptedDecoderOptions): Uint8Array {
  const layers = o.layers ?? 2;
  const heads = o.heads ?? 4;
  const kvHeads = o.architecture === 'llama' ? (o.kvHeads ?? 2) : heads;
  const headDim = o.headDim ?? 8;
  const maxPositions = o.maxPositions ?? 128;
  const V = o.vocabSize;
  const D = heads * headDim;
  const kvWidth = kvHeads * headDim;
  const repeat = heads / kvHeads;
  validate(o, { layers, heads, kvHeads, headDim, maxPositions });

  const random = seededRandom(SEED[o.architecture]);
  const uniform = (n: number, range: number) => Float32Array.from({ length: n }, () => (random() * 2 - 1) * range);
  const f32 = (name: string, dims: number[], data: Float32Array) => initializer(name, hostTensor('float32', dims, data));
  const i64 = (name: string, dims: number[], values: readonly number[]) =>
    initializer(name, hostTensor('int64', dims, BigInt64Array.from(values, (v) => BigInt(v))));

  const scriptTable = Array.from({ length: maxPositions }, (_, p) => o.script[p - o.scriptStart] ?? o.fillerId);
  // Projections ~1/sqrt(fan-in), so the residual stream stays of order 1 over a few layers.
  const projRange = 1 / Math.sqrt(D);
  const initializers: proto.ITensorProto[] = [
    f32('embed', [V, D], uniform(V * D, EMBED_RANGE)),
    f32('pos_embed', [maxPositions, D], uniform(maxPositions * D, EMBED_RANGE)),
    i64('script_table', [maxPositions], scriptTable),
    i64('vocab_depth', [], [V]),
    f32('script_onehot_values', [2], Float32Array.of(0, SCRIPT_LOGIT)),
    // |LN(h)|₂ ≤ √D and |embed row|₂ ≤ EMBED_RANGE·√D, so this keeps |term| ≤ 0.5 (Cauchy–Schwarz).
    f32('tied_scale', [], Float32Array.of(1 / (2 * D * EMBED_RANGE))),
    f32('ln_gamma', [D], new Float32Array(D).fill(1)),
    f32('ln_beta', [D], new Float32Array(D)),
    f32('attn_scale', [], Float32Array.of(1 / Math.sqrt(headDim))),
    f32('masked_score', [], Float32Array.of(MASKED_SCORE)),
    i64('zero', [], [0]),
    i64('one', [], [1]),
    i64('one_1d', [1], [1]),
    i64('two', [], [2]),
    i64('axes_1_2', [2], [1, 2]),
    i64('q_split', [4], [0, 0, heads, headDim]),
    i64('kv_split', [4], [0, 0, kvHeads, headDim]),
    i64('merge_heads', [3], [0, 0, D]),
    i64('probe_keep', [4], [0, 1, 0, 1]),
    i64('probe_ones', [4], [1, 0, 1, 0]),
    f32('probe_ref', [1, kvHeads, 1, headDim], new Float32Array(kvWidth)),
  ];

  if (repeat > 1) {
    initializers.push(
      i64('axis_2', [1], [2]),
      i64('repeat_shape', [5], [1, 1, repeat, 1, 1]),
      i64('repeated_kv', [4], [0, heads, -1, headDim]),
    );
  }

  const nodes: proto.INodeProto[] = [
    // past_len from the cache, seq_len from the ids: the positions of this call in cache coordinates.
    node('Shape', ['past_key_values.0.key'], ['past_shape']),
    node('Gather', ['past_shape', 'two'], ['past_len']),
    node('Shape', ['input_ids'], ['ids_shape']),
    node('Gather', ['ids_shape', 'one'], ['seq_len']),
    node('Add', ['past_len', 'seq_len'], ['total_len']),
    node('Range', ['past_len', 'total_len', 'one'], ['query_index']),
    node('Range', ['zero', 'total_len', 'one'], ['key_index']),
  ];
  if (o.architecture === 'gpt2') {
    nodes.push(node('Unsqueeze', ['query_index', 'zero_axis'], ['positions']));
    initializers.push(i64('zero_axis', [1], [0]));
  } else {
    nodes.push(node('Identity', ['position_ids'], ['positions']));
  }
  nodes.push(
    node('Gather', ['embed', 'input_ids'], ['tok_embed']),
    node('Gather', ['pos_embed', 'positions'], ['pos_vec']),
    node('Add', ['tok_embed', 'pos_vec'], ['h0']),
    // allowed[b, 0, s, t] = key t ≤ query s (absolute) and attention_mask[b, t] == 1.
    node('Unsqueeze', ['query_index', 'one_1d'], ['query_col']),
    node('LessOrEqual', ['key_index', 'query_col'], ['causal']),
    node('Cast', ['attention_mask'], ['mask_bool'], [intAttr('to', onnx.TensorProto.DataType.BOOL)]),
    node('Unsqueeze', ['mask_bool', 'axes_1_2'], ['mask4']),
    node('And', ['causal', 'mask4'], ['allowed']),
  );

  for (let i = 0; i < layers; i++) {
    const n = (s: string) => `l${i}_${s}`;
    initializers.push(
      f32(n('wq'), [D, D], uniform(D * D, projRange)),
      f32(n('wk'), [D, kvWidth], uniform(D * kvWidth, projRange)),
      f32(n('wv'), [D, kvWidth], uniform(D * kvWidth, projRange)),
      f32(n('wo'), [D, D], uniform(D * D, projRange)),
    );
    const h = `h${i}`;
    const keys = `present.${i}.key`;
    const values = `present.${i}.value`;
    nodes.push(
      node('MatMul', [h, n('wq')], [n('q')]),
      node('MatMul', [h, n('wk')], [n('k')]),
      node('MatMul', [h, n('wv')], [n('v')]),
      node('Reshape', [n('q'), 'q_split'], [n('q_split')]),
      node('Reshape', [n('k'), 'kv_split'], [n('k_split')]),
      node('Reshape', [n('v'), 'kv_split'], [n('v_split')]),
      node('Transpose', [n('q_split')], [n('q_heads')], [intsAttr('perm', [0, 2, 1, 3])]),
      node('Transpose', [n('k_split')], [n('k_new')], [intsAttr('perm', [0, 2, 1, 3])]),
      node('Transpose', [n('v_split')], [n('v_new')], [intsAttr('perm', [0, 2, 1, 3])]),
      // A non-empty past of the wrong head count or head size fails here.
      node('Concat', [`past_key_values.${i}.key`, n('k_new')], [keys], [intAttr('axis', 2)]),
      node('Concat', [`past_key_values.${i}.value`, n('v_new')], [values], [intAttr('axis', 2)]),
      // onnxruntime's Concat skips empty inputs, so an empty past (the prefill) is checked apart:
      // a zero probe [1, heads, 1, dim] of each past's heads and dim is concatenated with one of
      // the true sizes, and the (zero) sum joins the attention scale so the check is not pruned.
      ...(['key', 'value'] as const).flatMap((kind) => [
        node('Shape', [`past_key_values.${i}.${kind}`], [n(`past_${kind}_shape`)]),
        node('Mul', [n(`past_${kind}_shape`), 'probe_keep'], [n(`past_${kind}_kept`)]),
        node('Add', [n(`past_${kind}_kept`), 'probe_ones'], [n(`probe_${kind}_shape`)]),
        node('ConstantOfShape', [n(`probe_${kind}_shape`)], [n(`probe_${kind}`)]),
      ]),
      node('Concat', [n('probe_key'), n('probe_value'), 'probe_ref'], [n('probe')], [intAttr('axis', 2)]),
      node('ReduceSum', [n('probe')], [n('probe_sum')], [intAttr('keepdims', 0)]),
      node('Add', ['attn_scale', n('probe_sum')], [n('scale')]),
    );
    let k = keys;
    let v = values;
    if (repeat > 1) {
      // repeat_kv as in HF: query head j reads kv head floor(j / repeat).
      for (const [src, kind] of [[keys, 'k'], [values, 'v']] as const) {
        nodes.push(
          node('Unsqueeze', [src, 'axis_2'], [n(`${kind}_5d`)]),
          node('Expand', [n(`${kind}_5d`), 'repeat_shape'], [n(`${kind}_expanded`)]),
          node('Reshape', [n(`${kind}_expanded`), 'repeated_kv'], [n(`${kind}_rep`)]),
        );
      }
      k = n('k_rep');
      v = n('v_rep');
    }
    nodes.push(
      node('Transpose', [k], [n('kt')], [intsAttr('perm', [0, 1, 3, 2])]),
      node('MatMul', [n('q_heads'), n('kt')], [n('raw_scores')]),
      node('Mul', [n('raw_scores'), n('scale')], [n('scores')]),
      node('Where', ['allowed', n('scores'), 'masked_score'], [n('masked')]),
      node('Softmax', [n('masked')], [n('probs')], [intAttr('axis', -1)]),
      node('MatMul', [n('probs'), v], [n('ctx_heads')]),
      node('Transpose', [n('ctx_heads')], [n('ctx_split')], [intsAttr('perm', [0, 2, 1, 3])]),
      node('Reshape', [n('ctx_split'), 'merge_heads'], [n('ctx')]),
      node('MatMul', [n('ctx'), n('wo')], [n('attn_out')]),
      node('Add', [h, n('attn_out')], [`h${i + 1}`]),
    );
  }

  nodes.push(
    node('LayerNormalization', [`h${layers}`, 'ln_gamma', 'ln_beta'], ['h_norm'], [intAttr('axis', -1)]),
    node('Mul', ['h_norm', 'tied_scale'], ['h_scaled']),
    node('Transpose', ['embed'], ['embed_t'], [intsAttr('perm', [1, 0])]),
    node('MatMul', ['h_scaled', 'embed_t'], ['attn_logits']),
    node('Gather', ['script_table', 'positions'], ['script_ids']),
    node('OneHot', ['script_ids', 'vocab_depth', 'script_onehot_values'], ['script_logits'], [intAttr('axis', -1)]),
    node('Add', ['script_logits', 'attn_logits'], ['logits']),
  );

  const kvHeadsDim = o.architecture === 'llama' ? 'num_kv_heads' : 'num_heads';
  const inputs = [
    spec('input_ids', 'int64', ['batch_size', 'sequence_length']),
    spec('attention_mask', 'int64', ['batch_size', 'total_sequence_length']),
  ];
  if (o.architecture === 'llama') inputs.push(spec('position_ids', 'int64', ['batch_size', 'sequence_length']));
  const outputs = [spec('logits', 'float32', ['batch_size', 'sequence_length', V])];
  for (let i = 0; i < layers; i++) {
    for (const kind of ['key', 'value']) {
      inputs.push(spec(`past_key_values.${i}.${kind}`, 'float32', ['batch_size', kvHeadsDim, 'past_sequence_length', 'head_dim']));
      outputs.push(spec(`present.${i}.${kind}`, 'float32', ['batch_size', kvHeadsDim, 'total_sequence_length', 'head_dim']));
    }
  }
  return encodeModel({ name: `scripted_${o.architecture}_decoder`, inputs, outputs, nodes, initializers });
}

function validate(
  o: ScriptedDecoderOptions,
  r: { layers: number; heads: number; kvHeads: number; headDim: number; maxPositions: number },
): void {
  const positive = { vocabSize: o.vocabSize, layers: r.layers, heads: r.heads, kvHeads: r.kvHeads, headDim: r.headDim, maxPositions: r.maxPositions };
  for (const [name, value] of Object.entries(positive)) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`scriptedDecoderModel: ${name} must be a positive integer, got ${value}`);
  }
  if (r.heads % r.kvHeads !== 0) throw new Error(`scriptedDecoderModel: kvHeads ${r.kvHeads} does not divide heads ${r.heads}`);
  for (const id of [...o.script, o.fillerId]) {
    if (!Number.isInteger(id) || id < 0 || id >= o.vocabSize) {
      throw new Error(`scriptedDecoderModel: token ${id} is outside the vocabulary of ${o.vocabSize}`);
    }
  }
  if (!Number.isInteger(o.scriptStart) || o.scriptStart < 0 || o.scriptStart + o.script.length > r.maxPositions) {
    throw new Error(`scriptedDecoderModel: script at ${o.scriptStart}..${o.scriptStart + o.script.length} exceeds maxPositions ${r.maxPositions}`);
  }
}

function intAttr(name: string, i: number): proto.IAttributeProto {
  return { name, i, type: onnx.AttributeProto.AttributeType.INT };
}

function intsAttr(name: string, ints: readonly number[]): proto.IAttributeProto {
  return { name, ints: [...ints], type: onnx.AttributeProto.AttributeType.INTS };
}
