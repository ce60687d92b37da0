// The accelerator and model backends a node reports, as NodeInfo carries them (ListNodes, GetNode)
// and as Job.waiting names them, with the registry's records on a real Redis.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, ConclaveError } from '@conclave/common';
import type { AcceleratorInfo__Output, NodeMessage__Output, Register__Output } from '@conclave/protocol';
import { startRedis, type RedisServerHandle } from '@conclave/testing';
import { waitingReasons } from './control-service.js';
import type { JobRecord } from './job-store.js';
import { NodeRegistry } from './node-registry.js';
import { NodeSession, type NodeLink } from './node-session.js';

const hailo = (state: string, extra: Partial<AcceleratorInfo__Output> = {}): AcceleratorInfo__Output => ({
  kind: 'hailo', state, reason: '', arch: 'HAILO8', firmwareVersion: '4.20.0', hailortVersion: '4.20.0', driverVersion: '4.20.0',
  pcieGen: 3, pcieWidth: 1, temperatureC: 52, throttled: '0x0', warnings: [], ...extra,
});

function nodeSession(id: string, name: string, accelerator: AcceleratorInfo__Output | null): NodeSession {
  const link: NodeLink = { backpressured: false, send: () => true, writable: () => Promise.resolve(), close: () => undefined };
  const capabilities: Register__Output['capabilities'] = {
    backends: ['cpu', 'hailo'], backendActive: 'hailo', cpuCores: 4, memoryBytes: 8, features: [], agentVersion: '1', accelerator, backendReason: '',
  };
  return new NodeSession({
    link, register: { nodeId: id, name, slots: 2, models: [], pendingResults: [], capabilities, runningJobs: [] },
    logger: captureLogger('ORCH').logger, address: 'ipv4:10.0.0.5:1', fingerprint: 'SHA256:x',
    onFetchModel: () => undefined, onUnmatchedResult: () => undefined, maxSlots: 16,
  });
}

const heartbeat = (accelerator: AcceleratorInfo__Output): NodeMessage__Output => ({
  body: 'heartbeat',
  heartbeat: {
    slots: 2, loadedModels: ['m'], memoryUsedBytes: 0, backendActive: 'hailo', sentAtMs: 0, runningJobs: [], accelerator,
    modelBackends: [{ sha256: 'm', backend: 'cpu', reason: 'sidecar exited', p50Ms: 41.5, runs: 12, errors: 2 }],
  },
});

const queued = (accelerator: string): JobRecord => ({
  id: `j-${accelerator}`, state: 'queued', kind: 'infer', model: 'det', node: '', attempts: 0, createdAtMs: 1, finishedAtMs: 0, runMs: 0,
  requirements: { accelerator, capability: '', preferAccelerator: '', hefChips: ['hailo8'] },
});

describe('NodeRegistry: accelerators', () => {
  let server: RedisServerHandle;
  let redis: Redis;
  let registry: NodeRegistry;

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis({ host: server.host, port: server.port, maxRetriesPerRequest: null });
    registry = new NodeRegistry(redis, captureLogger('ORCH').logger, 1_000);
  });
  afterAll(async () => {
    registry?.stop();
    await redis?.quit();
    await server?.stop();
  });

  it('gives NodeInfo the last heartbeat\'s accelerator and model backends, and names an inactive chip in Job.waiting', async () => {
    const s = nodeSession('n1', 'pi-02', hailo('active'));
    expect(await registry.add(s)).toBe(true);
    expect((await registry.find('pi-02'))[0]?.accelerator).toMatchObject({ kind: 'hailo', state: 'active', pcieGen: 3 });
    expect((await waitingReasons(registry, [queued('hailo')])).size).toBe(0);

    s.receive(heartbeat(hailo('unavailable', { reason: 'sidecar exited', temperatureC: 63 })));
    const [info] = await registry.find('n1');
    expect(info?.accelerator).toMatchObject({ state: 'unavailable', reason: 'sidecar exited', temperatureC: 63, arch: 'HAILO8' });
    expect(info?.modelBackends).toEqual([{ sha256: 'm', backend: 'cpu', reason: 'sidecar exited', p50Ms: 41.5, runs: 12, errors: 2 }]);
    expect((await waitingReasons(registry, [queued('hailo')])).get('j-hailo'))
      .toBe('no node has accelerator "hailo" active (pi-02: hailo unavailable: sidecar exited)');
    expect((await waitingReasons(registry, [queued('cpu')])).size).toBe(0);

    // Gone: its record keeps the accelerator, which serves nothing while the node is away.
    s.close(new ConclaveError('ORCH-NET-602', { detail: 'test' }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const [offline] = await registry.find('n1');
    expect(offline).toMatchObject({ state: 'disconnected', accelerator: expect.objectContaining({ kind: 'hailo', arch: 'HAILO8' }) });
    expect((await waitingReasons(registry, [queued('hailo')])).get('j-hailo'))
      .toBe('no node has accelerator "hailo" active (pi-02: hailo unavailable: node disconnected)');
  });
});
