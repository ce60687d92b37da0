import { describe, expect, it, vi } from 'vitest';
import { captureLogger, ConclaveError } from '@conclave/common';
import type { AcceleratorInfo__Output, NodeMessage__Output, OrchestratorMessage, Register__Output } from '@conclave/protocol';
import {
  ADOPTION_GRACE_MS, DEAD_AFTER_MISSED, MAX_UNRECORDED_RESULTS_PER_NODE, NodeSession, SUSPECT_AFTER_MISSED, type NodeLink,
} from './node-session.js';
import { canRun } from './scheduling/scheduler.js';

/** A NodeSession over a recording link: what it sends, and how it was closed. */
function session(options: { slots?: number; runningJobs?: string[]; maxSlots?: number; capabilities?: Register__Output['capabilities'] } = {}) {
  const sent: OrchestratorMessage[] = [];
  const closed: ConclaveError[] = [];
  const link: NodeLink = {
    backpressured: false,
    send: (m) => {
      sent.push(m);
      return true;
    },
    writable: () => Promise.resolve(),
    close: (reason) => closed.push(reason),
  };
  const logs = captureLogger('ORCH');
  const fetches: string[] = [];
  const unmatched: string[] = [];
  const s = new NodeSession({
    link,
    register: {
      nodeId: 'n1', name: 'pi-01', slots: options.slots ?? 2, models: ['m'], pendingResults: [], capabilities: options.capabilities ?? null,
      runningJobs: options.runningJobs ?? [],
    },
    logger: logs.logger,
    address: 'ipv4:10.0.0.5:1234',
    fingerprint: 'SHA256:x',
    onFetchModel: (_, request) => fetches.push(request.sha256),
    onUnmatchedResult: (_, r) => unmatched.push(`${r.jobId}:${r.attempt}`),
    maxSlots: options.maxSlots ?? 16,
  });
  let capacity = 0;
  s.on('capacity', () => capacity++);
  const acks = () => sent.flatMap((m) => (m.resultAck ? [`${m.resultAck.jobId ?? ''}:${m.resultAck.attempt ?? 0}`] : []));
  return { s, sent, closed, logs, fetches, unmatched, acks, capacity: () => capacity };
}

const heartbeat = (runningJobs: string[], slots = 2): NodeMessage__Output => ({
  body: 'heartbeat', heartbeat: {
    slots, loadedModels: [], memoryUsedBytes: 0, backendActive: '', sentAtMs: 0, runningJobs, accelerator: null, modelBackends: [],
  },
});

const hailo = (state: string, extra: Partial<AcceleratorInfo__Output> = {}): AcceleratorInfo__Output => ({
  kind: 'hailo', state, reason: '', arch: 'HAILO8', firmwareVersion: '4.20.0', hailortVersion: '4.20.0', driverVersion: '4.20.0',
  pcieGen: 3, pcieWidth: 1, temperatureC: 52, throttled: '0x0', warnings: [], ...extra,
});

const result = (jobId: string, attempt = 1): NodeMessage__Output => ({
  body: 'result',
  result: { jobId, attempt, outcome: 'outputs', outputs: { tensors: {} }, error: null, generated: null, runMs: 1, queueMs: 0 },
});

describe('NodeSession lifecycle', () => {
  it('goes suspect, then dead, only when the registry reports the missed heartbeats, logging each change', () => {
    const { s, closed, logs } = session();
    s.heartbeatsMissed(SUSPECT_AFTER_MISSED - 1);
    expect(s.state).toBe('connected');
    s.heartbeatsMissed(SUSPECT_AFTER_MISSED);
    expect(s.state).toBe('suspect');
    expect(canRun(s.snapshot(), {})).toBe(false);
    s.heartbeatsMissed(DEAD_AFTER_MISSED);
    expect(s.state).toBe('dead');
    expect(closed.map((e) => e.code)).toEqual(['ORCH-HEALTH-901']);
    expect(logs.lines.filter((l) => l.includes('node state changed'))).toHaveLength(2);
    expect(logs.lines.some((l) => l.includes('from=suspect') && l.includes('to=dead'))).toBe(true);
  });

  it('comes back from suspect when the node is heard from, and never back from dead or closed', () => {
    const { s } = session();
    s.heartbeatsMissed(SUSPECT_AFTER_MISSED);
    s.receive({ body: 'heartbeat', heartbeat: { slots: 2, loadedModels: [], memoryUsedBytes: 0, backendActive: '', sentAtMs: 0, runningJobs: [], accelerator: null, modelBackends: [] } });
    expect(s.state).toBe('connected');
    s.close(new ConclaveError('ORCH-NET-602', { detail: 'stream ended' }));
    s.receive({ body: 'heartbeat', heartbeat: { slots: 2, loadedModels: [], memoryUsedBytes: 0, backendActive: '', sentAtMs: 0, runningJobs: [], accelerator: null, modelBackends: [] } });
    s.heartbeatsMissed(DEAD_AFTER_MISSED);
    expect(s.state).toBe('closed');
  });

  it('fails the jobs in flight at once when it closes, so they are retried elsewhere', async () => {
    const { s } = session();
    const running = s.assign({ jobId: 'j1', attempt: 1 });
    s.close(new ConclaveError('ORCH-NET-602', { detail: 'stream ended' }));
    await expect(running).rejects.toMatchObject({ code: 'ORCH-NET-602' });
    await expect(s.assign({ jobId: 'j2', attempt: 1 })).rejects.toMatchObject({ code: 'ORCH-NET-602' });
  });

  it('drains: no new work by the scheduler, running jobs finish, and undrain gives the slots back', async () => {
    const { s, capacity } = session();
    const running = s.assign({ jobId: 'j1', attempt: 1 });
    s.setDraining(true, 'test');
    expect(s.schedulable).toBe(false);
    expect(canRun(s.snapshot(), {})).toBe(false);
    s.receive(result('j1'));
    await expect(running).resolves.toMatchObject({ jobId: 'j1' });
    s.setDraining(false, 'test');
    expect(canRun(s.snapshot(), {})).toBe(true);
    // Drain, the freed slot and undrain each told the registry.
    expect(capacity()).toBe(3);
  });

  it('resolves the pending job once, frees its slot, and acks the result only once it is recorded', async () => {
    const { s, acks, unmatched, capacity } = session();
    const running = s.assign({ jobId: 'j1', attempt: 1 });
    s.receive(result('j1'));
    // A resend while the first copy is being recorded is neither a second result nor unmatched.
    s.receive(result('j1'));
    await expect(running).resolves.toMatchObject({ jobId: 'j1' });
    expect(unmatched).toEqual([]);
    expect(acks()).toEqual([]);
    expect(s.resultFor('j1', 1)).toMatchObject({ jobId: 'j1' });
    s.acknowledge('j1', 1);
    expect(acks()).toEqual(['j1:1']);
    expect(s.resultFor('j1', 1)).toBeUndefined();
    expect(s.running).toBe(0);
    expect(capacity()).toBe(1);
  });

  it('hands a result no job waits for to the handler once, and again after a failed recording released it', () => {
    const { s, acks, unmatched } = session();
    s.receive(result('old'));
    s.receive(result('old'));
    expect(unmatched).toEqual(['old:1']);
    s.releaseResult('old', 1);
    s.receive(result('old'));
    expect(unmatched).toEqual(['old:1', 'old:1']);
    expect(acks()).toEqual([]);
  });

  it('keeps at most MAX_UNRECORDED_RESULTS_PER_NODE unrecorded results; the rest go unacknowledged, for the node to resend', async () => {
    const { s, unmatched } = session();
    for (let i = 0; i < MAX_UNRECORDED_RESULTS_PER_NODE + 10; i++) s.receive(result(`j${i}`));
    expect(unmatched).toHaveLength(MAX_UNRECORDED_RESULTS_PER_NODE);
    // The cap is for results nobody waits for: a job's own result still gets through.
    const running = s.assign({ jobId: 'mine', attempt: 1 });
    s.receive(result('mine'));
    await expect(running).resolves.toMatchObject({ jobId: 'mine' });
  });

  it('gives a node no more slots than the orchestrator allows, whatever it claims, and says so once (ORCH-SCHED-853)', () => {
    const { s, logs } = session({ slots: 10_000, maxSlots: 16 });
    expect(s.slots).toBe(16);
    s.receive(heartbeat([], 5_000));
    expect(s.slots).toBe(16);
    s.receive(heartbeat([], 3));
    expect(s.slots).toBe(3);
    expect(logs.lines.filter((l) => l.includes('ORCH-SCHED-853'))).toHaveLength(1);
  });

  it('adopts a job the node runs: resolves with its result, or fails ORCH-JOB-806 once the node stops listing it past the grace', async () => {
    const { s } = session({ runningJobs: ['a:1', 'b:1'] });
    expect(s.hasJob('a', 1)).toBe(true);
    expect(s.hasJob('c', 1)).toBe(false);
    const a = s.adopt('a', 1);
    s.receive(result('a'));
    await expect(a).resolves.toMatchObject({ jobId: 'a' });

    vi.useFakeTimers();
    try {
      const b = s.adopt('b', 1);
      s.receive(heartbeat(['b:1']));
      vi.advanceTimersByTime(ADOPTION_GRACE_MS + 1);
      // Still listed: still adopted.
      s.receive(heartbeat(['b:1']));
      expect(s.running).toBe(1);
      s.receive(heartbeat([]));
      await expect(b).rejects.toMatchObject({ code: 'ORCH-JOB-806' });
      expect(s.running).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('reads every heartbeat field: loaded models and slots for placement, memory and clock for nodes list', () => {
    const { s, capacity } = session();
    s.receive({
      body: 'heartbeat',
      heartbeat: { slots: 4, loadedModels: ['m'], memoryUsedBytes: 5_000, backendActive: 'hailo', sentAtMs: Date.now() - 50, runningJobs: [], accelerator: null, modelBackends: [] },
    });
    expect([...s.loadedModels]).toEqual(['m']);
    expect(s.slots).toBe(4);
    expect(s.backendActive).toBe('hailo');
    expect(s.memoryUsedBytes).toBe(5_000);
    expect(s.clockOffsetMs).toBeGreaterThanOrEqual(50);
    // More slots: the dispatcher's concurrency must follow.
    expect(capacity()).toBe(1);
  });

  it('routes each message kind to one place: fetchModel to its handler, goodbye and a second Register close', () => {
    const a = session();
    a.s.receive({ body: 'fetchModel', fetchModel: { sha256: 'abc', offset: 0 } });
    expect(a.fetches).toEqual(['abc']);
    a.s.receive({ body: 'goodbye', goodbye: { reason: 'bye', code: '' } });
    expect(a.closed.map((e) => e.message)).toEqual([expect.stringContaining('node said goodbye: bye')]);
    const b = session();
    b.s.receive({ body: 'register', register: { nodeId: 'n1', name: '', slots: 1, models: [], pendingResults: [], capabilities: null, runningJobs: [] } });
    expect(b.closed.map((e) => e.code)).toEqual(['ORCH-NET-603']);
  });
});

describe('NodeSession accelerator and model backends', () => {
  const capabilities = (accelerator: AcceleratorInfo__Output | null): Register__Output['capabilities'] => ({
    backends: ['cpu', 'hailo'], backendActive: 'hailo', cpuCores: 4, memoryBytes: 8, features: [], agentVersion: '1', accelerator, backendReason: '',
  });

  it('keeps the accelerator from Register, then each heartbeat, and gives it to placement', () => {
    const { s } = session({ capabilities: capabilities(hailo('active')) });
    expect(s.accelerator?.state).toBe('active');
    expect(s.snapshot().accelerator?.arch).toBe('HAILO8');
    const beat = heartbeat([]);
    s.receive({
      ...beat,
      heartbeat: {
        ...beat.heartbeat!, accelerator: hailo('active', { temperatureC: 61 }),
        modelBackends: [{ sha256: 'm', backend: 'cpu', reason: 'golden check failed', p50Ms: 40, runs: 3, errors: 1 }],
      },
    });
    expect(s.accelerator?.temperatureC).toBe(61);
    expect(s.modelBackends).toEqual([expect.objectContaining({ sha256: 'm', backend: 'cpu', reason: 'golden check failed' })]);
    expect(s.snapshot().modelBackends?.get('m')).toBe('cpu');
    // A heartbeat without one (an older agent, or the device gone from detection) clears it.
    s.receive(heartbeat([]));
    expect(s.accelerator).toBeUndefined();
    expect(s.snapshot().modelBackends?.size).toBe(0);
  });

  it('wakes waiting jobs and logs when the accelerator state or a model backend changes, and only then', () => {
    const { s, logs, capacity } = session({ capabilities: capabilities(hailo('active')) });
    const beat = (accelerator: AcceleratorInfo__Output, backend = 'hailo'): NodeMessage__Output => ({
      ...heartbeat([]),
      heartbeat: { ...heartbeat([]).heartbeat!, accelerator, modelBackends: [{ sha256: 'm', backend, reason: '', p50Ms: 1, runs: 1, errors: 0 }] },
    });
    s.receive(beat(hailo('active')));
    const afterFirst = capacity();
    s.receive(beat(hailo('active', { temperatureC: 70 })));
    expect(capacity()).toBe(afterFirst);
    s.receive(beat(hailo('unavailable', { reason: 'sidecar exited' }), 'cpu'));
    expect(capacity()).toBe(afterFirst + 1);
    expect(logs.lines.some((l) => l.includes('node accelerator state changed') && l.includes('to=unavailable') && l.includes('sidecar exited'))).toBe(true);
    s.receive(beat(hailo('unavailable', { reason: 'sidecar exited' }), 'hailo'));
    expect(capacity()).toBe(afterFirst + 2);
  });
});
