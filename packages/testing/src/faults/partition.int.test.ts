// Fault drill on the network: one node in its own network namespace behind a veth pair (root
// only); runs the built CLIs (`pnpm build`), orchestrator and nodes as child processes.
import { afterEach, describe, expect, it } from 'vitest';
import { waitUntil } from '../wait-until.js';
import { Drill, DrillLoad, REATTACH_LIMIT_MS, report } from './drill.js';
import { netnsUnavailable, VethNetns } from './netns.js';

const unavailable = netnsUnavailable();

describe.skipIf(unavailable !== undefined)(`fault drills: a network partition${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  let drill: Drill | undefined;
  let netns: VethNetns | undefined;
  afterEach(async () => {
    await drill?.close();
    drill = undefined;
    // Also when the drill failed half-way: no namespace or veth outlives the test.
    netns?.remove();
    netns = undefined;
  });

  it('a node cut off past the dead timeout, then reconnected: jobs complete exactly once, it re-attaches within 10 s', async () => {
    netns = VethNetns.create();
    drill = await Drill.start({ redis: 'external', grpcHost: '0.0.0.0' });
    await drill.addNodes(2);
    const isolated = await drill.addNodeInNetns(netns.name, `${netns.hostAddress}:${drill.port}`);
    const load = await DrillLoad.submit(drill);
    await load.midLoad();
    await drill.waitNodeState(isolated.nodeId, ['connected'], 1_000);
    // Jobs in flight on the node behind the veth when the link goes.
    const running = async () => (await drill!.control.listNodes()).find((n) => n.id === isolated.nodeId)?.running ?? 0;
    await waitUntil(async () => (await running()) > 0, { what: 'a job running on the isolated node', timeoutMs: 20_000, intervalMs: 20 });

    netns.cut();
    const cutAt = performance.now();
    drill.mark('fault');
    const deadMs = await drill.waitNodeState(isolated.nodeId, ['dead', 'disconnected'], 10_000);
    await drill.holdPastDeadTimeout(cutAt);
    netns.restore();
    drill.mark('faultEnded');
    const reattachMs = await drill.waitAllConnected(REATTACH_LIMIT_MS);

    const records = await load.settled();
    expect(load.problems(records)).toEqual([]);
    expect(await load.changedByLateResults(records)).toEqual([]);
    const summary = load.summary(records, drill.nodes);
    report(drill, 'network partition', { ...summary, cutToDeadMs: deadMs, restoreToReattachedMs: reattachMs });
  });
});
