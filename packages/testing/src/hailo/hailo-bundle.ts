import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { BackendModel } from '@conclave/node-agent';
import type { ModelArtifact__Output } from '@conclave/protocol';
import { join } from 'node:path';
import { affineModel } from '../onnx/affine-model.js';
import { hostTensor, type ModelTensorSpec } from '../onnx/host-tensor.js';
import { encodeModel, initializer, node, spec } from '../onnx/onnx-graph.js';
import type { TinyModel } from '../onnx/tiny-model.js';

export interface HailoBundleOptions {
  /** The chip the fake HEF is compiled for. @default 'hailo8' */
  chip?: 'hailo8' | 'hailo8l';
  /** A pre.onnx (x·2) before the HEF, whose weights are then halved: a wrong order shows. @default false */
  pre?: boolean;
  /** A post.onnx (Relu) after the HEF; the reference is then Relu(x·W + b). @default false */
  post?: boolean;
  /** @default 1 */
  seed?: number;
  /** Imitates int8 noise: the fake rounds the HEF's outputs to multiples of this. */
  quantStep?: number;
}

/** What a bundle part is: its bytes and the signature the orchestrator would read from it. */
export interface BundlePart {
  readonly bytes: Uint8Array;
  readonly inputs: readonly ModelTensorSpec[];
  readonly outputs: readonly ModelTensorSpec[];
}

/** The manifest as `orchestrator models add --hailo-manifest` reads it (docs/cli.md). */
export interface HailoManifestJson {
  hailortVersion: string;
  compilerVersion: string;
  batchSize: number;
  tolerance: { absolute: number; relative: number };
  inputs: Array<{ name: string; vstream: string; dtype: string; layout: string }>;
  outputs: Array<{ name: string; vstream: string; dtype: string; layout: string }>;
}

export interface HailoBundle {
  /** model.onnx, the CPU reference, with what it computes in JS. */
  readonly reference: TinyModel;
  readonly pre?: BundlePart;
  readonly post?: BundlePart;
  /** The fake HEF (JSON the fake HailoRT runs: packages/testing/fake-hailort). */
  readonly hef: Record<string, unknown>;
  readonly chip: 'hailo8' | 'hailo8l';
  readonly manifest: HailoManifestJson;
  /** Writes model.onnx, <chip>.hef, pre.onnx, post.onnx and manifest.json into `dir`. */
  writeTo(dir: string): Promise<HailoBundlePaths>;
}

export interface HailoBundlePaths {
  model: string;
  hef: string;
  pre?: string;
  post?: string;
  manifest: string;
}

const FEATURES = 4;
const OUTPUTS = 3;
const INPUT_VSTREAM = 'affine/input_layer1';
const OUTPUT_VSTREAM = 'affine/fc1';

/**
 * A model bundle whose fake HEF computes what its model.onnx computes: x·W + b (then Relu
 * with `post`). Weights and inputs are dyadic, so the chip path and the CPU reference agree
 * exactly unless a test injects drift or quantisation.
 */
export function hailoBundle(options: HailoBundleOptions = {}): HailoBundle {
  const chip = options.chip ?? 'hailo8';
  const affine = affineModel({ features: FEATURES, outputs: OUTPUTS, seed: options.seed ?? 1 });
  const reference = options.post ? withRelu(affine) : affine;
  const hefInput = options.pre ? 'x2' : 'x';
  const hefOutput = options.post ? 'logits' : 'y';
  const weightScale = options.pre ? 0.5 : 1;
  const rows: number[][] = [];
  for (let i = 0; i < FEATURES; i++) {
    rows.push(Array.from({ length: OUTPUTS }, (_, c) => affine.weights[i * OUTPUTS + c]! * weightScale));
  }
  const hef = {
    fake_hef: 1,
    arch: chip,
    inputs: [{ name: INPUT_VSTREAM, shape: [FEATURES], dtype: 'float32' }],
    outputs: [{ name: OUTPUT_VSTREAM, shape: [OUTPUTS], dtype: 'float32' }],
    op: { kind: 'affine', weights: rows, bias: Array.from(affine.bias) },
    ...(options.quantStep ? { quant_step: options.quantStep } : {}),
  };
  const pre = options.pre ? doublePart() : undefined;
  const post = options.post ? reluPart() : undefined;
  const manifest: HailoManifestJson = {
    hailortVersion: '4.20.0',
    compilerVersion: '3.30.0',
    batchSize: 1,
    tolerance: { absolute: 1e-4, relative: 0 },
    inputs: [{ name: hefInput, vstream: INPUT_VSTREAM, dtype: 'float32', layout: 'NC' }],
    outputs: [{ name: hefOutput, vstream: OUTPUT_VSTREAM, dtype: 'float32', layout: 'NC' }],
  };
  return {
    reference, hef, chip, manifest,
    ...(pre ? { pre } : {}),
    ...(post ? { post } : {}),
    async writeTo(dir) {
      await mkdir(dir, { recursive: true });
      const paths: HailoBundlePaths = { model: join(dir, 'model.onnx'), hef: join(dir, `${chip}.hef`), manifest: join(dir, 'manifest.json') };
      await writeFile(paths.model, reference.bytes);
      await writeFile(paths.hef, JSON.stringify(hef));
      await writeFile(paths.manifest, JSON.stringify(manifest, null, 2));
      if (pre) await writeFile((paths.pre = join(dir, 'pre.onnx')), pre.bytes);
      if (post) await writeFile((paths.post = join(dir, 'post.onnx')), post.bytes);
      return paths;
    },
  };
}

/** Relu(x·W + b) in one graph: the reference of a bundle whose post.onnx is the Relu. */
function withRelu(affine: ReturnType<typeof affineModel>): TinyModel {
  const inputs = [spec('x', 'float32', ['batch', FEATURES])];
  const outputs = [spec('y', 'float32', ['batch', OUTPUTS])];
  const bytes = encodeModel({
    name: 'affine_relu', inputs, outputs,
    nodes: [node('MatMul', ['x', 'W'], ['xW']), node('Add', ['xW', 'b'], ['logits']), node('Relu', ['logits'], ['y'])],
    initializers: [
      initializer('W', hostTensor('float32', [FEATURES, OUTPUTS], affine.weights)),
      initializer('b', hostTensor('float32', [OUTPUTS], affine.bias)),
    ],
  });
  return {
    name: 'affine-relu', bytes, inputs, outputs,
    expected(given) {
      const y = affine.expected(given).y!;
      const data = Float32Array.from(y.data as Float32Array, (v) => Math.max(0, v));
      return { y: hostTensor('float32', y.dims, data) };
    },
    sampleInputs: (size) => affine.sampleInputs(size),
  };
}

function doublePart(): BundlePart {
  const inputs = [spec('x', 'float32', ['batch', FEATURES])];
  const outputs = [spec('x2', 'float32', ['batch', FEATURES])];
  const bytes = encodeModel({
    name: 'pre_double', inputs, outputs,
    nodes: [node('Mul', ['x', 'two'], ['x2'])],
    initializers: [initializer('two', hostTensor('float32', [1], Float32Array.of(2)))],
  });
  return { bytes, inputs, outputs };
}

function reluPart(): BundlePart {
  const inputs = [spec('logits', 'float32', ['batch', OUTPUTS])];
  const outputs = [spec('y', 'float32', ['batch', OUTPUTS])];
  const bytes = encodeModel({ name: 'post_relu', inputs, outputs, nodes: [node('Relu', ['logits'], ['y'])], initializers: [] });
  return { bytes, inputs, outputs };
}

/** A bundle's files on disk, as a node's model store would hold them. */
export interface BundleOnDisk {
  model: { path: string; inputs: readonly ModelTensorSpec[]; outputs: readonly ModelTensorSpec[] };
  hef: { chip: string; path: string };
  pre?: { path: string; inputs: readonly ModelTensorSpec[]; outputs: readonly ModelTensorSpec[] };
  post?: { path: string; inputs: readonly ModelTensorSpec[]; outputs: readonly ModelTensorSpec[] };
  manifest: HailoManifestJson;
}

/**
 * The bundle as the job runner hands it to a backend (artifacts by digest, the manifest as the
 * orchestrator records it), and the path of each file by its digest, for `fetchArtifact`.
 */
export async function bundleBackendModel(files: BundleOnDisk): Promise<{ model: BackendModel; pathsBySha: Map<string, string> }> {
  const pathsBySha = new Map<string, string>();
  const digest = async (path: string) => {
    const bytes = await readFile(path);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    pathsBySha.set(sha256, path);
    return { sha256, size: bytes.byteLength };
  };
  const artifacts: ModelArtifact__Output[] = [{ role: 'hef', chip: files.hef.chip, ...(await digest(files.hef.path)), inputs: [], outputs: [] }];
  for (const role of ['pre', 'post'] as const) {
    const part = files[role];
    if (part) artifacts.push({ role, chip: '', ...(await digest(part.path)), inputs: [...part.inputs], outputs: [...part.outputs] });
  }
  const m = files.manifest;
  const tensorMap = (t: HailoManifestJson['inputs'][number]) => ({ ...t, qpScale: 0, qpZeroPoint: 0 });
  const model: BackendModel = {
    sha256: (await digest(files.model.path)).sha256, path: files.model.path,
    inputs: files.model.inputs, outputs: files.model.outputs, artifacts,
    hailo: {
      hailortVersion: m.hailortVersion, compilerVersion: m.compilerVersion, batchSize: m.batchSize,
      toleranceAbs: m.tolerance.absolute, toleranceRel: m.tolerance.relative,
      inputs: m.inputs.map(tensorMap), outputs: m.outputs.map(tensorMap),
    },
  };
  return { model, pathsBySha };
}

/** A hailoBundle's files described by `bundleBackendModel`. */
export function bundleOnDisk(bundle: HailoBundle, paths: HailoBundlePaths): BundleOnDisk {
  return {
    model: { path: paths.model, inputs: bundle.reference.inputs, outputs: bundle.reference.outputs },
    hef: { chip: bundle.chip, path: paths.hef },
    ...(paths.pre && bundle.pre ? { pre: { path: paths.pre, inputs: bundle.pre.inputs, outputs: bundle.pre.outputs } } : {}),
    ...(paths.post && bundle.post ? { post: { path: paths.post, inputs: bundle.post.inputs, outputs: bundle.post.outputs } } : {}),
    manifest: bundle.manifest,
  };
}
