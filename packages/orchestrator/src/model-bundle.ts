import { ConclaveError } from '@conclave/common';
import type { HailoManifest__Output, HailoTensorMap__Output, TensorSpec } from '@conclave/protocol';
import type { ModelSignature } from './model-inspector.js';

/**
 * A model bundle: model.onnx (the CPU reference, always first), then a HEF per Hailo chip and
 * the ONNX parts that run on the CPU before (pre) and after (post) the HEF, described by a
 * manifest. This module checks the header before any byte is stored and the manifest against
 * the parts once they are read; model-registry.ts stores what passes.
 */

export const BUNDLE_ROLES = ['hef', 'pre', 'post'] as const;
export type BundleRole = (typeof BUNDLE_ROLES)[number];

/** The chips a HEF may be compiled for; a HEF runs only on its own. */
export const HEF_CHIPS = ['hailo8', 'hailo8l'] as const;
export type HefChip = (typeof HEF_CHIPS)[number];

/** What the host may exchange with HailoRT per vstream. */
export const VSTREAM_DTYPES = ['uint8', 'float32'] as const;

/** A file the AddModel header lists after model.onnx (AddModelFile). */
export interface BundleFileHeader {
  role: string;
  chip: string;
  size: number;
  /** From the manifest, to check against the bytes; '' when not given. */
  sha256: string;
}

/** A bundle file as stored and recorded (ModelArtifact). */
export interface ModelArtifactRecord {
  role: BundleRole;
  /** For a HEF; '' for pre/post. */
  chip: string;
  sha256: string;
  size: number;
  /** The signature of a pre/post part; empty for a HEF. */
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export type HailoManifestRecord = HailoManifest__Output;

/** A checked file of the header. */
export interface BundleFile {
  role: BundleRole;
  chip: string;
  size: number;
  sha256: string;
}

const SHA256 = /^[0-9a-f]{64}$/;

/** How the messages name a file of the bundle: `hef hailo8`, `pre.onnx`. */
export function fileLabel(file: Pick<BundleFile, 'role' | 'chip'>): string {
  return file.role === 'hef' ? `hef ${file.chip}` : `${file.role}.onnx`;
}

/**
 * Checks an AddModel header's bundle before any byte is read: model.onnx first with its size
 * (ORCH-REQ-270), each file's role, chip, size and digest, no chip or part twice (ORCH-REQ-271),
 * and a manifest for a HEF (ORCH-REQ-272). Returns the files, typed.
 */
export function checkBundleHeader(header: { size: number; files: readonly BundleFileHeader[]; hailo: HailoManifestRecord | null }): BundleFile[] {
  const { files, hailo } = header;
  if (files.length === 0 && !hailo) return [];
  if (!(header.size > 0)) {
    throw new ConclaveError('ORCH-REQ-270', { detail: `${files.length} bundle file(s) and no model.onnx (its size is 0)`, data: { field: 'size' } });
  }
  const seen = new Set<string>();
  const out: BundleFile[] = [];
  files.forEach((file, index) => {
    const where = `file ${index + 1}`;
    const refuse = (detail: string) => {
      throw new ConclaveError('ORCH-REQ-271', { detail: `${where}: ${detail}`, data: { file: index + 1 } });
    };
    if (!(BUNDLE_ROLES as readonly string[]).includes(file.role)) refuse(`role ${JSON.stringify(file.role)} is none of ${BUNDLE_ROLES.join(', ')}`);
    const role = file.role as BundleRole;
    if (role === 'hef' && !(HEF_CHIPS as readonly string[]).includes(file.chip)) {
      refuse(`a HEF's chip ${JSON.stringify(file.chip)} is none of ${HEF_CHIPS.join(', ')}`);
    }
    if (role !== 'hef' && file.chip !== '') refuse(`${role}.onnx has a chip (${JSON.stringify(file.chip)}); only a HEF has one`);
    const label = fileLabel({ role, chip: file.chip });
    if (seen.has(label)) refuse(role === 'hef' ? `a second HEF for ${file.chip}` : `a second ${label}`);
    seen.add(label);
    if (!(file.size > 0)) refuse(`${label} is empty`);
    if (file.sha256 !== '' && !SHA256.test(file.sha256)) refuse(`${label}: sha256 ${JSON.stringify(file.sha256)} is not 64 lowercase hex digits`);
    out.push({ role, chip: role === 'hef' ? file.chip : '', size: file.size, sha256: file.sha256 });
  });
  const hasHef = out.some((f) => f.role === 'hef');
  if (hasHef && !hailo) throw new ConclaveError('ORCH-REQ-272', { detail: 'a HEF needs a Hailo manifest (--hailo-manifest)', data: { field: 'hailo' } });
  if (!hasHef) {
    const parts = out.map(fileLabel);
    if (parts.length > 0) throw new ConclaveError('ORCH-REQ-271', { detail: `${parts.join(' and ')} without a HEF: they run only around one`, data: {} });
    throw new ConclaveError('ORCH-REQ-272', { detail: 'a Hailo manifest without a HEF', data: { field: 'hailo' } });
  }
  return out;
}

/** The signatures of the bundle's ONNX parts, as the inspector read them. */
export interface BundleSignatures {
  model: ModelSignature;
  pre?: ModelSignature;
  post?: ModelSignature;
}

/**
 * Checks the manifest against the ONNX parts (ORCH-REQ-272). The HEF's inputs are pre.onnx's
 * outputs (model.onnx's inputs without pre.onnx), its outputs post.onnx's inputs (model.onnx's
 * outputs without post.onnx): the manifest must map each of them once, and nothing else, each
 * with a vstream and a dtype the host can exchange. pre.onnx takes model.onnx's inputs and
 * post.onnx gives its outputs, so that a job's tensors fit either path. Tolerances are not negative.
 */
export function checkManifest(manifest: HailoManifestRecord, parts: BundleSignatures): void {
  const refuse = (field: string, detail: string): never => {
    throw new ConclaveError('ORCH-REQ-272', { detail: `${field}: ${detail}`, data: { field } });
  };
  for (const [field, value] of [['tolerance.absolute', manifest.toleranceAbs], ['tolerance.relative', manifest.toleranceRel]] as const) {
    if (!Number.isFinite(value) || value < 0) refuse(field, `${value} is negative or not a number`);
  }
  if (parts.pre) sameTensors(refuse, 'pre.onnx inputs', parts.pre.inputs, parts.model.inputs, "model.onnx's inputs");
  if (parts.post) sameTensors(refuse, 'post.onnx outputs', parts.post.outputs, parts.model.outputs, "model.onnx's outputs");
  const hefInputs = parts.pre ? { tensors: parts.pre.outputs, of: "pre.onnx's outputs" } : { tensors: parts.model.inputs, of: "model.onnx's inputs" };
  const hefOutputs = parts.post ? { tensors: parts.post.inputs, of: "post.onnx's inputs" } : { tensors: parts.model.outputs, of: "model.onnx's outputs" };
  checkMaps(refuse, 'inputs', manifest.inputs, hefInputs.tensors, hefInputs.of);
  checkMaps(refuse, 'outputs', manifest.outputs, hefOutputs.tensors, hefOutputs.of);
}

type Refuse = (field: string, detail: string) => never;

function checkMaps(refuse: Refuse, field: string, maps: readonly HailoTensorMap__Output[], tensors: readonly TensorSpec[], of: string): void {
  const names = tensors.map((t) => t.name ?? '');
  const mapped = new Set<string>();
  maps.forEach((map, i) => {
    const at = `${field}[${i}]`;
    if (!map.name) refuse(`${at}.name`, 'missing');
    if (!names.includes(map.name)) refuse(`${at}.name`, `"${map.name}" is not one of ${of} (${names.join(', ') || 'none'})`);
    if (mapped.has(map.name)) refuse(`${at}.name`, `"${map.name}" is mapped twice`);
    mapped.add(map.name);
    if (!map.vstream) refuse(`${at}.vstream`, `missing for "${map.name}"`);
    if (!(VSTREAM_DTYPES as readonly string[]).includes(map.dtype)) {
      refuse(`${at}.dtype`, `${JSON.stringify(map.dtype)} for "${map.name}" is none of ${VSTREAM_DTYPES.join(', ')}`);
    }
    // The shim moves bytes, it converts nothing: a conversion belongs in pre.onnx / post.onnx.
    const tensorDtype = tensors.find((t) => t.name === map.name)?.dtype ?? '';
    if (map.dtype !== tensorDtype) {
      refuse(`${at}.dtype`, `"${map.name}" is ${tensorDtype} in ${of}, the manifest exchanges ${map.dtype}: convert in pre.onnx / post.onnx`);
    }
  });
  const unmapped = names.filter((n) => !mapped.has(n));
  if (unmapped.length > 0) refuse(field, `${of} ${unmapped.map((n) => `"${n}"`).join(', ')} not mapped to a vstream`);
}

function sameTensors(refuse: Refuse, field: string, got: readonly TensorSpec[], want: readonly TensorSpec[], of: string): void {
  const describe = (ts: readonly TensorSpec[]) => ts.map((t) => `${t.name ?? ''}:${t.dtype ?? ''}`).sort().join(', ');
  if (describe(got) !== describe(want)) refuse(field, `${describe(got) || 'none'} are not ${of} (${describe(want) || 'none'})`);
}

/** The chips the bundle has a HEF for (placement's `hefChips`). */
export function hefChipsOf(artifacts: readonly Pick<ModelArtifactRecord, 'role' | 'chip'>[]): string[] {
  return artifacts.filter((a) => a.role === 'hef').map((a) => a.chip);
}
