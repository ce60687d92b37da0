import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { onnx as proto } from 'onnx-proto';
import { onnx } from './onnx-graph.js';
import type { TinyModel } from './tiny-model.js';

/** Writes `<dir>/<name>.onnx` and returns its path. */
export async function writeModel(dir: string, name: string, model: TinyModel | Uint8Array): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${name}.onnx`);
  await writeFile(path, model instanceof Uint8Array ? model : model.bytes);
  return path;
}

/** Alignment of each initializer in the data file; ORT maps external data and likes aligned offsets. */
const EXTERNAL_ALIGNMENT = 64;

export interface ExternalDataFiles {
  /** The `.onnx` file: graph only; load it by this path (a buffer cannot resolve the side file). */
  readonly modelPath: string;
  /** The side file holding the initializers' bytes, named relative to the model in each `location`. */
  readonly dataPath: string;
}

/**
 * Writes the model with every initializer moved to `<name>.onnx.data`: each one gets
 * `external_data` entries `location`, `offset` and `length`, `data_location = EXTERNAL`
 * and no inline bytes, as onnx's `save_model(..., save_as_external_data=True)` does.
 */
export async function writeModelWithExternalData(
  dir: string,
  name: string,
  model: TinyModel | Uint8Array,
): Promise<ExternalDataFiles> {
  await mkdir(dir, { recursive: true });
  const decoded = onnx.ModelProto.decode(model instanceof Uint8Array ? model : model.bytes);
  const modelPath = join(dir, `${name}.onnx`);
  const dataPath = `${modelPath}.data`;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const init of decoded.graph?.initializer ?? []) {
    const raw = rawBytes(init);
    const padding = (EXTERNAL_ALIGNMENT - (offset % EXTERNAL_ALIGNMENT)) % EXTERNAL_ALIGNMENT;
    if (padding) chunks.push(new Uint8Array(padding));
    offset += padding;
    init.externalData = [
      { key: 'location', value: basename(dataPath) },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.length) },
    ];
    init.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    init.rawData = new Uint8Array(0);
    chunks.push(raw);
    offset += raw.length;
  }
  await writeFile(dataPath, Buffer.concat(chunks));
  await writeFile(modelPath, onnx.ModelProto.encode(decoded).finish());
  return { modelPath, dataPath };
}

function rawBytes(init: proto.ITensorProto): Uint8Array {
  if (init.rawData && init.rawData.length > 0) return init.rawData;
  // The builders here always write raw_data; typed fields (float_data…) would need a codec.
  throw new Error(`writeModelWithExternalData: initializer '${init.name}' has no raw_data`);
}
