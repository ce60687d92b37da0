import { readFile } from 'node:fs/promises';
import { ConclaveError, z } from '@conclave/common';
import type { HailoManifest } from '@conclave/protocol';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256: 64 lowercase hex digits');
const tolerance = z.number().min(0, 'must not be negative');

const tensorMap = z.strictObject({
  /** The ONNX tensor the vstream carries. */
  name: z.string().min(1),
  /** The HEF's vstream, e.g. "yolov8s/input_layer1". */
  vstream: z.string().min(1),
  dtype: z.enum(['uint8', 'float32']),
  layout: z.string().default(''),
  qpScale: z.number().default(0),
  qpZeroPoint: z.number().default(0),
});

/**
 * The file `models add --hailo-manifest` reads (docs/cli.md, "Hailo manifest"): what the
 * compiler made of the model, how the HEF's vstreams map to the ONNX tensors, and the golden
 * check's tolerance. `files` optionally gives each file's sha256, checked by the orchestrator
 * against the bytes it receives (ORCH-LOAD-112).
 */
export const hailoManifestSchema = z.strictObject({
  hailortVersion: z.string().min(1),
  compilerVersion: z.string().min(1),
  /** Frames per HEF call. @default 1 */
  batchSize: z.number().int().min(1).max(4096).default(1),
  tolerance: z.strictObject({ absolute: tolerance, relative: tolerance }),
  inputs: z.array(tensorMap).min(1),
  outputs: z.array(tensorMap).min(1),
  files: z.strictObject({ hailo8: sha256, hailo8l: sha256, pre: sha256, post: sha256 }).partial().default({}),
});

export type HailoManifestFile = z.output<typeof hailoManifestSchema>;

/** The manifest as the AddModel header carries it, and the digests it gives by file (`hailo8`, `pre`, …). */
export interface ParsedHailoManifest {
  manifest: HailoManifest;
  digests: Partial<Record<'hailo8' | 'hailo8l' | 'pre' | 'post', string>>;
}

/** Parses a manifest's text; ORCH-REQ-273 naming the file and each field that is wrong. */
export function parseHailoManifest(text: string, path: string): ParsedHailoManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConclaveError('ORCH-REQ-273', { detail: `${path}: not JSON (${err instanceof Error ? err.message : String(err)})`, data: { path }, cause: err });
  }
  const result = hailoManifestSchema.safeParse(json);
  if (!result.success) {
    const detail = result.error.issues.map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(top level)'}: ${issue.message}`).join('; ');
    throw new ConclaveError('ORCH-REQ-273', { detail: `${path}: ${detail}`, data: { path } });
  }
  const m = result.data;
  return {
    manifest: {
      hailortVersion: m.hailortVersion, compilerVersion: m.compilerVersion, batchSize: m.batchSize,
      toleranceAbs: m.tolerance.absolute, toleranceRel: m.tolerance.relative,
      inputs: m.inputs, outputs: m.outputs,
    },
    digests: m.files,
  };
}

/** Reads and parses the manifest file; ORCH-REQ-252 when it cannot be read. */
export async function readHailoManifest(path: string): Promise<ParsedHailoManifest> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConclaveError('ORCH-REQ-252', { detail: err instanceof Error ? err.message : String(err), data: { path }, cause: err });
  }
  return parseHailoManifest(text, path);
}
