import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isConclaveError } from '@conclave/common';
import { DEMO_MODEL_DIR } from './demo-model.js';
import { inspectModelDir, modelDirFingerprint } from './model-files.js';
import { TextCodec } from './text-codec.js';

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

  it('reads a chat template from chat_template.jinja or chat_template.json before tokenizer_config.json', () => {
    const dir = copyDemo('template-files');
    const configPath = join(dir, 'tokenizer_config.json');
    const { chat_template: _, ...withoutTemplate } = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(configPath, JSON.stringify(withoutTemplate));
    const chat = [{ role: 'user', content: 'model' }];
    // No template anywhere: a coded refusal that names the request field.
    expect(() => TextCodec.fromModelFiles(inspectModelDir(dir)).encodeChat(chat)).toThrow(
      expect.objectContaining({ code: 'MODEL-REQ-211', data: { field: 'messages' } }),
    );
    const before = modelDirFingerprint(dir);
    writeFileSync(join(dir, 'chat_template.json'), JSON.stringify({ chat_template: 'the {{ messages[0].content }}' }));
    expect(inspectModelDir(dir).chatTemplateFile).toBe('the {{ messages[0].content }}');
    const fromJson = TextCodec.fromModelFiles(inspectModelDir(dir));
    expect(fromJson.decode(fromJson.encodeChat(chat))).toBe('the model');
    // A template file added later changes the fingerprint, so a failed lazy model loads again.
    expect(modelDirFingerprint(dir)).not.toBe(before);
    writeFileSync(join(dir, 'chat_template.jinja'), 'it {{ messages[0].content }}');
    const codec = TextCodec.fromModelFiles(inspectModelDir(dir));
    // The demo's word-level tokenizer knows 'it' and 'model': the .jinja file won.
    expect(codec.decode(codec.encodeChat(chat))).toBe('it model');
  });
});
