import { describe, expect, it } from 'vitest';
import { parseHailoManifest } from './hailo-manifest.js';

const DIGEST = 'a'.repeat(64);
const valid = {
  hailortVersion: '4.20.0', compilerVersion: '3.29.0', tolerance: { absolute: 0.05, relative: 0 },
  inputs: [{ name: 'images', vstream: 'yolov8s/input_layer1', dtype: 'uint8', layout: 'NHWC', qpScale: 0.0039, qpZeroPoint: 0 }],
  outputs: [{ name: 'boxes', vstream: 'yolov8s/conv41', dtype: 'float32' }],
  files: { hailo8: DIGEST },
};
const parse = (json: unknown) => parseHailoManifest(JSON.stringify(json), 'manifest.json');
const refusal = (json: unknown) => {
  try {
    parse(json);
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('parsed');
};

describe('parseHailoManifest', () => {
  it('maps the file to the header\'s HailoManifest, with defaults, and keeps the digests apart', () => {
    const { manifest, digests } = parse(valid);
    expect(manifest).toEqual({
      hailortVersion: '4.20.0', compilerVersion: '3.29.0', batchSize: 1, toleranceAbs: 0.05, toleranceRel: 0,
      inputs: [valid.inputs[0]], outputs: [{ ...valid.outputs[0], layout: '', qpScale: 0, qpZeroPoint: 0 }],
    });
    expect(digests).toEqual({ hailo8: DIGEST });
    expect(parse({ ...valid, files: undefined }).digests).toEqual({});
  });

  it('refuses each mistake with ORCH-REQ-273 naming the file and the field', () => {
    expect(refusal({ ...valid, tolerance: { absolute: -0.1, relative: 0 } })).toMatchObject({ code: 'ORCH-REQ-273', message: expect.stringMatching(/manifest\.json: tolerance\.absolute/) });
    expect(refusal({ ...valid, inputs: [{ ...valid.inputs[0], dtype: 'int8' }] }).message).toMatch(/inputs\.0\.dtype/);
    expect(refusal({ ...valid, outputs: [] }).message).toMatch(/outputs/);
    expect(refusal({ ...valid, files: { hailo8: 'abc' } }).message).toMatch(/files\.hailo8: must be a sha256/);
    expect(refusal({ ...valid, files: { model: DIGEST } }).message).toMatch(/files/);
    expect(refusal({ ...valid, tolerence: 1 }).message).toMatch(/tolerence/);
    expect(refusal({ ...valid, hailortVersion: undefined }).message).toMatch(/hailortVersion/);
    expect(() => parseHailoManifest('{', 'm.json')).toThrow(/ORCH-REQ-273|not JSON/);
  });
});
