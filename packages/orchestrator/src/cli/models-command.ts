import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { ConclaveError, EXIT_OK } from '@conclave/common';
import type { AddModelHeader, HailoManifest__Output, ModelArtifact__Output, ModelInfo__Output, TensorSpec__Output } from '@conclave/protocol';
import type { CliIo } from './cli-io.js';
import type { ControlCalls } from './control-calls.js';
import { readHailoManifest } from './hailo-manifest.js';
import { formatBytes, formatJson, formatKeyValues, formatTable, formatTime, orDash } from './output-format.js';

/** Upload chunk size: well under gRPC's 4 MiB default message limit, large enough to keep the stream busy. */
export const MODEL_CHUNK_BYTES = 256 * 1024;

export interface AddModelOptions {
  name: string;
  file: string;
  /** HEFs by the chip they were compiled for. */
  hef?: ReadonlyArray<{ chip: 'hailo8' | 'hailo8l'; path: string }>;
  pre?: string;
  post?: string;
  /** The bundle's manifest (hailo-manifest.ts reads it). */
  hailoManifest?: string;
  json?: boolean;
}

/**
 * `models add NAME FILE.onnx [--hef CHIP=FILE.hef]… [--pre pre.onnx] [--post post.onnx]
 * [--hailo-manifest manifest.json]`: streams the header, then model.onnx, then each bundle file
 * in the header's order, in 256 KiB chunks. The manifest is read and checked before anything is sent.
 */
export async function addModelCommand(calls: ControlCalls, io: CliIo, options: AddModelOptions): Promise<number> {
  const parsed = options.hailoManifest ? await readHailoManifest(options.hailoManifest) : undefined;
  const digests = parsed?.digests ?? {};
  const listed: Array<{ role: string; chip: string; path: string; digestKey: keyof typeof digests }> = [
    ...(options.hef ?? []).map((h) => ({ role: 'hef', chip: h.chip, path: h.path, digestKey: h.chip })),
    ...(options.pre ? [{ role: 'pre', chip: '', path: options.pre, digestKey: 'pre' as const }] : []),
    ...(options.post ? [{ role: 'post', chip: '', path: options.post, digestKey: 'post' as const }] : []),
  ];
  for (const key of Object.keys(digests)) {
    if (!listed.some((f) => f.digestKey === key)) {
      throw new ConclaveError('ORCH-REQ-273', {
        detail: `${options.hailoManifest ?? ''}: files.${key} gives a digest for a file not on the command line (${key === 'pre' || key === 'post' ? `--${key}` : `--hef ${key}=FILE.hef`})`,
        data: { path: options.hailoManifest },
      });
    }
  }
  const size = await modelFileSize(options.file);
  const files = await Promise.all(
    listed.map(async (f) => ({ role: f.role, chip: f.chip, size: await modelFileSize(f.path), sha256: digests[f.digestKey] ?? '' })),
  );
  const header: AddModelHeader = { name: options.name, size, files, ...(parsed ? { hailo: parsed.manifest } : {}) };
  const model = await calls.addModel(header, readAll([options.file, ...listed.map((f) => f.path)]));
  io.stdout.write(options.json ? formatJson(modelToJson(model)) : formatModel(model));
  return EXIT_OK;
}

async function* readAll(paths: readonly string[]): AsyncGenerator<Uint8Array> {
  for (const path of paths) yield* readChunks(path);
}

async function modelFileSize(file: string): Promise<number> {
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new Error(`${file} is not a file`);
    return info.size;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConclaveError('ORCH-REQ-252', { detail: reason, data: { path: file }, cause: err });
  }
}

async function* readChunks(file: string): AsyncGenerator<Uint8Array> {
  try {
    // highWaterMark makes every chunk but the last exactly MODEL_CHUNK_BYTES.
    for await (const chunk of createReadStream(file, { highWaterMark: MODEL_CHUNK_BYTES })) yield chunk as Buffer;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConclaveError('ORCH-REQ-252', { detail: reason, data: { path: file }, cause: err });
  }
}

export interface ListModelsOptions {
  json?: boolean;
}

/** `models list`. */
export async function listModelsCommand(calls: ControlCalls, io: CliIo, options: ListModelsOptions): Promise<number> {
  const models = await calls.listModels();
  io.stdout.write(options.json ? formatJson(models.map(modelToJson)) : formatModelTable(models));
  return EXIT_OK;
}

export interface ModelJson {
  name: string;
  sha256: string;
  size: number;
  inputs: TensorSpecJson[];
  outputs: TensorSpecJson[];
  addedAtMs: number;
  /** The bundle's files besides model.onnx; empty for a plain model. */
  artifacts: ArtifactJson[];
  /** The bundle's Hailo manifest; null without a HEF. */
  hailo: HailoManifest__Output | null;
}

export interface ArtifactJson {
  role: string;
  chip: string;
  sha256: string;
  size: number;
  inputs: TensorSpecJson[];
  outputs: TensorSpecJson[];
}

export interface TensorSpecJson {
  name: string;
  dtype: string;
  dims: number[];
  dimNames: string[];
}

export function modelToJson(model: ModelInfo__Output): ModelJson {
  const spec = (s: TensorSpec__Output): TensorSpecJson => ({
    name: s.name,
    dtype: s.dtype,
    dims: s.dims.map(Number),
    dimNames: s.dimNames,
  });
  return {
    name: model.name,
    sha256: model.sha256,
    size: Number(model.size),
    inputs: model.inputs.map(spec),
    outputs: model.outputs.map(spec),
    addedAtMs: Number(model.addedAtMs),
    artifacts: model.artifacts.map((a: ModelArtifact__Output) => ({
      role: a.role, chip: a.chip, sha256: a.sha256, size: Number(a.size), inputs: a.inputs.map(spec), outputs: a.outputs.map(spec),
    })),
    hailo: model.hailo,
  };
}

/** `hef hailo8,hailo8l + pre + post`: what the bundle has besides model.onnx; '-' for a plain model. */
export function formatBundle(model: Pick<ModelInfo__Output, 'artifacts'>): string {
  const chips = model.artifacts.filter((a) => a.role === 'hef').map((a) => a.chip);
  const parts = [
    ...(chips.length > 0 ? [`hef ${chips.join(',')}`] : []),
    ...model.artifacts.filter((a) => a.role !== 'hef').map((a) => a.role),
  ];
  return parts.length > 0 ? parts.join(' + ') : '-';
}

/** `x:float32[batch,4]`: a symbolic dimension shows its name, or `?`. */
export function formatSpec(spec: TensorSpec__Output): string {
  const dims = spec.dims.map((d, i) => (Number(d) >= 0 ? String(d) : spec.dimNames[i] || '?'));
  return `${spec.name}:${spec.dtype}[${dims.join(',')}]`;
}

export function formatModelTable(models: readonly ModelInfo__Output[]): string {
  if (models.length === 0) return 'no models; add one with `orchestrator models add NAME FILE.onnx`\n';
  return formatTable(
    [
      { header: 'name' }, { header: 'size', align: 'right' }, { header: 'sha256' }, { header: 'inputs' }, { header: 'outputs' },
      { header: 'bundle' }, { header: 'added' },
    ],
    models.map((m) => [
      m.name,
      formatBytes(Number(m.size)),
      m.sha256.slice(0, 12),
      m.inputs.map(formatSpec).join(' '),
      m.outputs.map(formatSpec).join(' '),
      formatBundle(m),
      formatTime(Number(m.addedAtMs)),
    ]),
  );
}

export function formatModel(model: ModelInfo__Output): string {
  return formatKeyValues([
    ['name', model.name],
    ['size', `${formatBytes(Number(model.size))} (${Number(model.size)} bytes)`],
    ['sha256', model.sha256],
    ['inputs', model.inputs.map(formatSpec).join(' ')],
    ['outputs', model.outputs.map(formatSpec).join(' ')],
    ...model.artifacts.map((a): [string, string] => [
      a.role === 'hef' ? `hef ${a.chip}` : `${a.role}.onnx`,
      `${a.sha256} (${formatBytes(Number(a.size))})${a.role === 'hef' ? '' : ` ${a.inputs.map(formatSpec).join(' ')} -> ${a.outputs.map(formatSpec).join(' ')}`}`,
    ]),
    ...(model.hailo ? formatManifest(model.hailo) : []),
    ['added', formatTime(Number(model.addedAtMs))],
  ]);
}

/** The manifest's facts as key-value rows: versions, tolerance, batch, and each vstream's mapping. */
function formatManifest(m: HailoManifest__Output): Array<[string, string]> {
  const maps = (list: HailoManifest__Output['inputs']) => list.map((t) => `${t.name}=${t.vstream}:${t.dtype}${t.layout ? `/${t.layout}` : ''}`).join(' ');
  return [
    ['hailort', `${orDash(m.hailortVersion)} (compiler ${orDash(m.compilerVersion)})`],
    ['tolerance', `abs ${m.toleranceAbs}, rel ${m.toleranceRel}`],
    ['batch', String(m.batchSize || 1)],
    ['hef inputs', maps(m.inputs)],
    ['hef outputs', maps(m.outputs)],
  ];
}

export interface RemoveModelOptions {
  /** Remove it even while queued or running jobs need it. */
  force?: boolean;
  json?: boolean;
}

/** `models remove NAME`: out of the registry, its file deleted; prints what was removed. */
export async function removeModelCommand(calls: ControlCalls, io: CliIo, name: string, options: RemoveModelOptions): Promise<number> {
  const model = await calls.removeModel(name, options.force ?? false);
  io.stdout.write(
    options.json
      ? formatJson(modelToJson(model))
      : formatKeyValues([
          ['removed', model.name],
          ['sha256', model.sha256],
          ['size', formatBytes(Number(model.size))],
        ]),
  );
  return EXIT_OK;
}
