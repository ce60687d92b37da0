import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { ConclaveError, EXIT_OK } from '@conclave/common';
import type { ModelInfo__Output, TensorSpec__Output } from '@conclave/protocol';
import type { CliIo } from './cli-io.js';
import type { ControlCalls } from './control-calls.js';
import { formatBytes, formatJson, formatKeyValues, formatTable, formatTime } from './output-format.js';

/** Upload chunk size: well under gRPC's 4 MiB default message limit, large enough to keep the stream busy. */
export const MODEL_CHUNK_BYTES = 256 * 1024;

export interface AddModelOptions {
  name: string;
  file: string;
  json?: boolean;
}

/** `models add NAME FILE.onnx`: streams the file, header first, in 256 KiB chunks. */
export async function addModelCommand(calls: ControlCalls, io: CliIo, options: AddModelOptions): Promise<number> {
  const size = await modelFileSize(options.file);
  const chunks = readChunks(options.file);
  const model = await calls.addModel({ name: options.name, size }, chunks);
  io.stdout.write(options.json ? formatJson(modelToJson(model)) : formatModel(model));
  return EXIT_OK;
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
  };
}

/** `x:float32[batch,4]`: a symbolic dimension shows its name, or `?`. */
export function formatSpec(spec: TensorSpec__Output): string {
  const dims = spec.dims.map((d, i) => (Number(d) >= 0 ? String(d) : spec.dimNames[i] || '?'));
  return `${spec.name}:${spec.dtype}[${dims.join(',')}]`;
}

export function formatModelTable(models: readonly ModelInfo__Output[]): string {
  if (models.length === 0) return 'no models; add one with `orchestrator models add NAME FILE.onnx`\n';
  return formatTable(
    [{ header: 'name' }, { header: 'size', align: 'right' }, { header: 'sha256' }, { header: 'inputs' }, { header: 'outputs' }, { header: 'added' }],
    models.map((m) => [
      m.name,
      formatBytes(Number(m.size)),
      m.sha256.slice(0, 12),
      m.inputs.map(formatSpec).join(' '),
      m.outputs.map(formatSpec).join(' '),
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
    ['added', formatTime(Number(model.addedAtMs))],
  ]);
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
