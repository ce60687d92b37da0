import { describe, expect, it } from 'vitest';
import { captureLogger, ConclaveError } from '@conclave/common';
import type { NodeMessage__Output, OrchestratorMessage } from '@conclave/protocol';
import { DEAD_AFTER_MISSED, NodeSession, SUSPECT_AFTER_MISSED, type NodeLink } from './node-session.js';
import { canRun } from './scheduling/scheduler.js';

/** A NodeSession over a recording link: what it sends, and how it was closed. */
function session() {
  const sent: OrchestratorMessage[] = [];
  const closed: ConclaveError[] = [];
  const link: NodeLink = {
    send: (m) => {
      sent.push(m);
      return true;
    },
    writable: () => Promise.resolve(),
    close: (reason) => closed.push(reason),
  };
  const logs = captureLogger('ORCH');
  const fetches: string[] = [];
  const s = new NodeSession({
    link,
    register: { nodeId: 'n1', name: 'pi-01', slots: 2, models: ['m'], pendingResults: [], capabilities: null },
    logger: logs.logger,
    address: 'ipv4:10.0.0.5:1234',
    fingerprint: 'SHA256:x',
    onFetchModel: (_, request) => fetches.push(request.sha256),
  });
  let capacity = 0;
  s.on('capacity', () => capacity++);
  return { s, sent, closed, logs, fetches, capacity: () => capacity };
}

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
    s.receive({ body: 'heartbeat', heartbeat: { slots: 2, loadedModels: [], memoryUsedBytes: 0, backendActive: '', sentAtMs: 0 } });
    expect(s.state).toBe('connected');
    s.close(new ConclaveError('ORCH-NET-602', { detail: 'stream ended' }));
    s.receive({ body: 'heartbeat', heartbeat: { slots: 2, loadedModels: [], memoryUsedBytes: 0, backendActive: '', sentAtMs: 0 } });
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

  it('acks every result, resolves the pending job once, and frees its slot', async () => {
    const { s, sent, capacity } = session();
    const running = s.assign({ jobId: 'j1', attempt: 1 });
    s.receive(result('j1'));
    s.receive(result('j1'));
    await expect(running).resolves.toMatchObject({ jobId: 'j1' });
    expect(sent.filter((m) => m.resultAck).length).toBe(2);
    expect(s.running).toBe(0);
    expect(capacity()).toBe(1);
  });

  it('reads every heartbeat field: loaded models and slots for placement, memory and clock for nodes list', () => {
    const { s, capacity } = session();
    s.receive({
      body: 'heartbeat',
      heartbeat: { slots: 4, loadedModels: ['m'], memoryUsedBytes: 5_000, backendActive: 'hailo', sentAtMs: Date.now() - 50 },
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
    b.s.receive({ body: 'register', register: { nodeId: 'n1', name: '', slots: 1, models: [], pendingResults: [], capabilities: null } });
    expect(b.closed.map((e) => e.code)).toEqual(['ORCH-NET-603']);
  });
});
