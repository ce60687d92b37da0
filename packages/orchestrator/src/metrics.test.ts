import { describe, expect, it } from 'vitest';
import type { JobCount } from './job-store.js';
import { Registry } from 'prom-client';
import { MAX_MODEL_LABELS, OTHER_MODELS_LABEL, jobCountsByLabel, registerNodeAcceleratorGauges, type NodeAcceleratorView } from './metrics.js';

describe('jobCountsByLabel', () => {
  it('keeps every model while there are few', () => {
    const counts: JobCount[] = [
      { state: 'queued', model: 'a', count: 2 }, { state: 'running', model: 'a', count: 1 }, { state: 'completed', model: '', count: 7 },
    ];
    expect(jobCountsByLabel(counts)).toEqual(counts);
  });

  it('names the models with the most jobs and sums the rest under one label, per state', () => {
    const counts: JobCount[] = [];
    for (let i = 0; i < MAX_MODEL_LABELS + 5; i++) {
      // m0 has the most jobs, m24 the fewest.
      counts.push({ state: 'completed', model: `m${i}`, count: 100 - i });
      counts.push({ state: 'queued', model: `m${i}`, count: 1 });
    }
    const labelled = jobCountsByLabel(counts);
    const models = new Set(labelled.map((c) => c.model));
    expect(models.size).toBe(MAX_MODEL_LABELS + 1);
    expect(models.has('m0')).toBe(true);
    expect(models.has(`m${MAX_MODEL_LABELS - 1}`)).toBe(true);
    expect(models.has(`m${MAX_MODEL_LABELS}`)).toBe(false);
    const other = (state: string) => labelled.find((c) => c.model === OTHER_MODELS_LABEL && c.state === state)?.count;
    expect(other('queued')).toBe(5);
    expect(other('completed')).toBe([20, 21, 22, 23, 24].reduce((sum, i) => sum + 100 - i, 0));
    // Nothing is lost: the totals per state stay the same.
    const total = (list: JobCount[], state: string) => list.filter((c) => c.state === state).reduce((sum, c) => sum + c.count, 0);
    expect(total(labelled, 'completed')).toBe(total(counts, 'completed'));
  });
});

describe('the node accelerator gauges', () => {
  it('show each connected node\'s accelerator and where each loaded model runs, models by name', async () => {
    const register = new Registry();
    const nodes: NodeAcceleratorView[] = [
      {
        id: 'n1', name: 'pi-01',
        accelerator: {
          kind: 'hailo', state: 'active', reason: '', arch: 'HAILO8', firmwareVersion: '4.20.0', hailortVersion: '4.20.0', driverVersion: '4.20.0',
          pcieGen: 3, pcieWidth: 1, temperatureC: 52.5, throttled: '0x0', warnings: [],
        },
        modelBackends: [
          { sha256: 'a'.repeat(64), backend: 'hailo', reason: '', p50Ms: 2, runs: 5, errors: 1 },
          { sha256: 'b'.repeat(64), backend: 'cpu', reason: 'no HEF for hailo8', p50Ms: 0, runs: 0, errors: 0 },
        ],
      },
      { id: 'n2', name: 'cpu-01', accelerator: undefined, modelBackends: [] },
    ];
    registerNodeAcceleratorGauges(register, () => nodes, () => Promise.resolve(new Map([['a'.repeat(64), 'yolov8s']])));
    const text = await register.metrics();
    expect(text).toContain('conclave_node_accelerator_info{node="n1",name="pi-01",kind="hailo",arch="HAILO8",state="active",firmware="4.20.0",hailort="4.20.0",driver="4.20.0"} 1');
    expect(text).toContain('conclave_node_accelerator_temperature_celsius{node="n1"} 52.5');
    expect(text).toContain('conclave_node_accelerator_pcie_gen{node="n1"} 3');
    expect(text).toContain('conclave_node_accelerator_throttled{node="n1"} 0');
    expect(text).not.toMatch(/node="n2"/);
    expect(text).toContain('conclave_node_model_backend{node="n1",model="yolov8s",backend="hailo"} 1');
    expect(text).toContain(`conclave_node_model_backend{node="n1",model="${'b'.repeat(12)}",backend="cpu"} 1`);
    expect(text).toContain('conclave_node_model_p50_seconds{node="n1",model="yolov8s"} 0.002');
    // No runs yet: no median to show.
    expect(text).not.toContain(`conclave_node_model_p50_seconds{node="n1",model="${'b'.repeat(12)}"}`);
    expect(text).toContain('conclave_node_model_errors{node="n1",model="yolov8s"} 1');
    expect(text).toContain('conclave_node_model_runs{node="n1",model="yolov8s"} 5');
  });
});
