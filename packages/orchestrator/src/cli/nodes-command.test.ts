import { describe, expect, it } from 'vitest';
import type { AcceleratorInfo__Output, ModelInfo__Output, NodeInfo__Output } from '@conclave/protocol';
import { formatBundle } from './models-command.js';
import { formatAccelerator, formatModelBackends, formatNode } from './nodes-command.js';

const hailo = (extra: Partial<AcceleratorInfo__Output> = {}): AcceleratorInfo__Output => ({
  kind: 'hailo', state: 'active', reason: '', arch: 'HAILO8', firmwareVersion: '4.20.0', hailortVersion: '4.20.0', driverVersion: '4.20.1',
  pcieGen: 3, pcieWidth: 1, temperatureC: 52.4, throttled: '0x0', warnings: [], ...extra,
});

describe('formatAccelerator (the nodes list column)', () => {
  it('shows an active chip with its facts, an unavailable one as such, and none as -', () => {
    expect(formatAccelerator(hailo())).toBe('hailo HAILO8 gen3 52°C');
    expect(formatAccelerator(hailo({ pcieGen: 0, temperatureC: 0, throttled: '0x50005' }))).toBe('hailo HAILO8 throttled');
    // Throttled since boot (bits 16–19) but not now: no state of the board now.
    expect(formatAccelerator(hailo({ pcieGen: 0, temperatureC: 0, throttled: '0x50000' }))).toBe('hailo HAILO8');
    expect(formatAccelerator(hailo({ state: 'unavailable', reason: 'sidecar exited' }))).toBe('hailo unavailable');
    expect(formatAccelerator(hailo({ state: 'absent' }))).toBe('-');
    expect(formatAccelerator(null)).toBe('-');
  });
});

describe('nodes get', () => {
  const node = { id: 'n1', name: 'pi-01', backends: ['cpu', 'hailo'], features: [], loadedModels: [], models: [], warnings: [] } as unknown as NodeInfo__Output;

  it("lists the accelerator's facts and, per loaded model, the backend it really runs on", () => {
    const text = formatNode({
      ...node, accelerator: hailo({ warnings: ['PCIe link at Gen 2'] }),
      modelBackends: [
        { sha256: 'b'.repeat(64), backend: 'cpu', reason: 'golden check: max error 0.4 > 0.05', p50Ms: 41.25, runs: 10, errors: 0 },
        { sha256: 'a'.repeat(64), backend: 'hailo', reason: '', p50Ms: 2.04, runs: 300, errors: 1 },
      ],
    }, 0, new Map([['a'.repeat(64), 'yolov8s']]));
    expect(text).toMatch(/^accelerator: +hailo active$/m);
    expect(text).toMatch(/^ {2}pcie: +gen3 x1$/m);
    expect(text).toMatch(/^ {2}temperature: +52\.4 °C$/m);
    expect(text).toMatch(/^ {2}driver: +4\.20\.1$/m);
    expect(text).toMatch(/^ {2}warning: +PCIe link at Gen 2$/m);
    const table = text.slice(text.indexOf('MODEL'));
    expect(table.split('\n')[0]).toMatch(/^MODEL +RUNS ON +P50 MS +RUNS +ERRORS +REASON$/);
    expect(table).toMatch(/^b{12} +cpu +41\.25 +10 +0 +golden check: max error 0\.4 > 0\.05$/m);
    expect(table).toMatch(/^yolov8s +hailo +2\.04 +300 +1 +-$/m);
  });

  it('says why an accelerator is not active, and has no table without loaded models', () => {
    const text = formatNode({ ...node, accelerator: hailo({ state: 'unavailable', reason: 'sidecar exited' }), modelBackends: [] }, 0);
    expect(text).toMatch(/^accelerator: +hailo unavailable \(sidecar exited\)$/m);
    expect(text).not.toMatch(/RUNS ON/);
    expect(formatNode({ ...node, accelerator: null, modelBackends: [] }, 0)).toMatch(/^accelerator: +-$/m);
    expect(formatModelBackends([], new Map()).trim()).toMatch(/^MODEL/);
  });
});

describe('formatBundle (the models list column)', () => {
  const artifact = (role: string, chip = '') => ({ role, chip, sha256: '', size: 1, inputs: [], outputs: [] });
  it('names the HEF chips and the parts, or - for a plain model', () => {
    const model = (artifacts: ModelInfo__Output['artifacts']) => ({ artifacts });
    expect(formatBundle(model([artifact('hef', 'hailo8'), artifact('hef', 'hailo8l'), artifact('pre'), artifact('post')]))).toBe('hef hailo8,hailo8l + pre + post');
    expect(formatBundle(model([artifact('hef', 'hailo8')]))).toBe('hef hailo8');
    expect(formatBundle(model([]))).toBe('-');
  });
});
