// Fault drills on nodes: runs the built CLIs (`pnpm build`); orchestrator and nodes are child processes.
import { afterEach, describe, expect, it } from 'vitest';
import { Drill, DrillLoad, REATTACH_LIMIT_MS, report } from './drill.js';

describe('fault drills: a node lost under load', () => {
  let drill: Drill | undefined;
  afterEach(async () => {
    await drill?.close();
    drill = undefined;
  });

  it('kill -9 of a node mid-load: every job completes exactly once, with the right output, on the others', async () => {
    drill = await Drill.start({ redis: 'external' });
    await drill.addNodes(3);
    const load = await DrillLoad.submit(drill);
    await load.midLoad();
    const victim = await drill.busyNode();
    victim.process.kill('SIGKILL');
    const killedAtMs = Date.now();
    drill.mark('fault');
    await victim.exited;
    const goneMs = await drill.waitNodeState(victim.nodeId, ['dead', 'disconnected'], 10_000);

    const records = await load.settled();
    expect(load.problems(records)).toEqual([]);
    // A job recorded as done by the dead node must have finished before it died.
    const lateOnVictim = [...records.values()].filter((j) => j.node === victim.nodeId && Number(j.finishedAtMs) > killedAtMs + 1_000);
    expect(lateOnVictim.map((j) => j.id), 'completed on the node after it was killed').toEqual([]);
    const summary = load.summary(records, drill.nodes);
    // Something was in flight on the victim (ListNodes said so): it ran again elsewhere.
    expect(summary.retried).toBeGreaterThan(0);
    expect(await load.changedSince(records)).toEqual([]);
    report(drill, 'kill -9 node', { ...summary, killToGoneMs: goneMs });
  });

  it('SIGSTOP of a node past the dead timeout, then SIGCONT: jobs complete exactly once, the node re-attaches', async () => {
    drill = await Drill.start({ redis: 'external' });
    await drill.addNodes(3);
    const load = await DrillLoad.submit(drill);
    await load.midLoad();
    const victim = await drill.busyNode();
    victim.process.kill('SIGSTOP');
    const stoppedAt = performance.now();
    drill.mark('fault');
    const deadMs = await drill.waitNodeState(victim.nodeId, ['dead'], 10_000);
    // Silent for twice the dead timeout. Its jobs go back to the queue; whether they run again
    // elsewhere before it wakes depends on the backlog, so either way is right as long as each
    // completes once (the bench measures dead → running elsewhere on an idle fleet).
    await drill.holdPastDeadTimeout(stoppedAt);
    victim.process.kill('SIGCONT');
    drill.mark('faultEnded');
    const reattachMs = await drill.waitAllConnected(REATTACH_LIMIT_MS);

    const records = await load.settled();
    expect(load.problems(records)).toEqual([]);
    // The woken node finishes what it held and resends the results from its outbox; a result
    // for an attempt that was given up must not complete the job a second time.
    expect(await load.changedByLateResults(records)).toEqual([]);
    const summary = load.summary(records, drill.nodes);
    report(drill, 'SIGSTOP node', { ...summary, stopToDeadMs: deadMs, sigcontToReattachedMs: reattachMs });
  });
});
