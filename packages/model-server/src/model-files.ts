import { closeSync, openSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ConclaveError } from '@conclave/common';

/** A model directory as HF optimum exports it, checked and measured. */
export interface ModelFiles {
  /** Canonical (real) path of the directory: the single-flight key. */
  readonly dir: string;
  readonly onnxPath: string;
  /** External-data files next to the ONNX file, by name. */
  readonly externalDataPaths: readonly string[];
  /** ONNX file plus external data, in bytes: what loading maps or reads. */
  readonly weightBytes: number;
  readonly config: Record<string, unknown>;
  readonly generationConfig: Record<string, unknown>;
  readonly tokenizerJson: Record<string, unknown>;
  readonly tokenizerConfig: Record<string, unknown>;
  /**
   * The chat template from its own file (`chat_template.jinja`, or `chat_template.json`
   * as transformers 4.43+ writes it); undefined leaves tokenizer_config.json's.
   */
  readonly chatTemplateFile: string | undefined;
}

const REQUIRED_JSON = ['config.json', 'tokenizer.json', 'tokenizer_config.json'] as const;
const ONNX_CANDIDATES = ['model.onnx', join('onnx', 'model.onnx')];

/**
 * Checks a model directory before anything is loaded: every required file is
 * present and parses, and the ONNX file starts like a serialized ModelProto.
 * Throws MODEL-LOAD-102 (missing) or MODEL-LOAD-103 (unparseable).
 */
export function inspectModelDir(dirPath: string): ModelFiles {
  let dir: string;
  try {
    dir = realpathSync(dirPath);
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
  } catch (cause) {
    throw new ConclaveError('MODEL-LOAD-102', { detail: `model directory ${dirPath} not found`, data: { dir: dirPath }, cause });
  }
  const json = (name: string, required: boolean): Record<string, unknown> => {
    const path = join(dir, name);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (cause) {
      if (!required) return {};
      throw new ConclaveError('MODEL-LOAD-102', { detail: `${name} missing in ${dir}`, data: { dir, file: name }, cause });
    }
    try {
      const value: unknown = JSON.parse(text);
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
      return value as Record<string, unknown>;
    } catch (cause) {
      throw new ConclaveError('MODEL-LOAD-103', { detail: `${name} is not a JSON object`, data: { dir, file: name }, cause });
    }
  };
  const [config, tokenizerJson, tokenizerConfig] = REQUIRED_JSON.map((name) => json(name, true)) as [
    Record<string, unknown>, Record<string, unknown>, Record<string, unknown>,
  ];
  const generationConfig = json('generation_config.json', false);
  const chatTemplateFile = readChatTemplateFile(dir, json);
  const onnxPath = ONNX_CANDIDATES.map((p) => join(dir, p)).find((p) => isFile(p));
  if (!onnxPath) {
    throw new ConclaveError('MODEL-LOAD-102', { detail: `neither model.onnx nor onnx/model.onnx in ${dir}`, data: { dir } });
  }
  checkOnnxHeader(onnxPath);
  // optimum names external data `model.onnx_data` (or `model.onnx.data`); count every sibling that starts so.
  const stem = basename(onnxPath);
  const externalDataPaths = [`${stem}_data`, `${stem}.data`]
    .map((name) => join(dirname(onnxPath), name))
    .filter((p) => isFile(p));
  const weightBytes = [onnxPath, ...externalDataPaths].reduce((sum, p) => sum + statSync(p).size, 0);
  return { dir, onnxPath, externalDataPaths, weightBytes, config, generationConfig, tokenizerJson, tokenizerConfig, chatTemplateFile };
}

/** The files transformers reads a chat template from, before tokenizer_config.json's `chat_template`. */
const CHAT_TEMPLATE_FILES = ['chat_template.jinja', 'chat_template.json'] as const;

function readChatTemplateFile(dir: string, json: (name: string, required: boolean) => Record<string, unknown>): string | undefined {
  const jinja = join(dir, CHAT_TEMPLATE_FILES[0]);
  if (isFile(jinja)) return readFileSync(jinja, 'utf8');
  const template = json(CHAT_TEMPLATE_FILES[1], false)['chat_template'];
  return typeof template === 'string' ? template : undefined;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * A serialized ModelProto starts with field 1 (ir_version, varint: 0x08) in every
 * exporter we know of; anything else (a text file, a safetensors blob) is refused
 * here with a clear code instead of a native parse error later.
 */
function checkOnnxHeader(path: string): void {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(2);
    const n = readSync(fd, head, 0, 2, 0);
    if (n < 2 || head[0] !== 0x08 || (head[1] as number) > 20) {
      throw new ConclaveError('MODEL-LOAD-103', { detail: `${path} is not an ONNX model`, data: { file: path } });
    }
  } finally {
    closeSync(fd);
  }
}

/** What `modelDirFingerprint` looks at: the directory, its onnx/ folder, and every file a load reads. */
const FINGERPRINT_PATHS = [
  '.', 'onnx', ...REQUIRED_JSON, 'generation_config.json', ...CHAT_TEMPLATE_FILES,
  ...ONNX_CANDIDATES.flatMap((p) => [p, `${p}_data`, `${p}.data`]),
];

/**
 * Size and mtime of everything a load of `dirPath` reads, as one string: when it
 * changes, a directory that failed to load may load now. A dozen stat calls, so it
 * is cheap enough to check on every request for a failed model.
 */
export function modelDirFingerprint(dirPath: string): string {
  return FINGERPRINT_PATHS.map((name) => {
    try {
      const s = statSync(join(dirPath, name));
      return `${s.size}:${s.mtimeMs}`;
    } catch {
      return '-';
    }
  }).join('|');
}
