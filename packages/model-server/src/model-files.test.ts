import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isConclaveError } from '@conclave/common';
import { DEMO_MODEL_DIR } from './demo-model.js';
import { inspectModelDir } from './model-files.js';

const root = mkdtempSync(join(tmpdir(), 'model-files-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function copyDemo(name: string): string {
  const dir = join(root, name);
  cpSync(DEMO_MODEL_DIR, dir, { recursive: true });
  return dir;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isConclaveError(err) ? err.code : String(err);
  }
  return undefined;
}

describe('inspectModelDir', () => {
  it('finds onnx/model.onnx and reads the configs', () => {
    const files = inspectModelDir(DEMO_MODEL_DIR);
    expect(files.onnxPath.endsWith(join('onnx', 'model.onnx'))).toBe(true);
    expect(files.config['model_type']).toBe('conclave-demo');
    expect(files.weightBytes).toBeGreaterThan(0);
  });

  it('refuses a missing directory or file with MODEL-LOAD-102', () => {
    expect(codeOf(() => inspectModelDir(join(root, 'nothing')))).toBe('MODEL-LOAD-102');
    const dir = copyDemo('no-tokenizer');
    rmSync(join(dir, 'tokenizer.json'));
    expect(codeOf(() => inspectModelDir(dir))).toBe('MODEL-LOAD-102');
    const noOnnx = copyDemo('no-onnx');
    rmSync(join(noOnnx, 'onnx'), { recursive: true });
    expect(codeOf(() => inspectModelDir(noOnnx))).toBe('MODEL-LOAD-102');
  });

  it('refuses a non-ONNX model file or broken JSON with MODEL-LOAD-103', () => {
    const dir = copyDemo('not-onnx');
    writeFileSync(join(dir, 'onnx', 'model.onnx'), 'this is not a protobuf\n');
    expect(codeOf(() => inspectModelDir(dir))).toBe('MODEL-LOAD-103');
    const json = copyDemo('bad-json');
    writeFileSync(join(json, 'config.json'), '{ nope');
    expect(codeOf(() => inspectModelDir(json))).toBe('MODEL-LOAD-103');
  });
});
