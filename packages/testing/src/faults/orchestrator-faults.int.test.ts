// Fault drills on the orchestrator: runs the built CLIs (`pnpm build`); orchestrator and nodes are child processes.
import { afterEach, describe, expect, it } from 'vitest';
import { Drill, DrillLoad, REATTACH_LIMIT_MS, report } from './drill.js';
import type { DrillOptions } from './drill.js';

describe('fault drills: the orchestrator lost under load', () => {
  let drill: Drill | undefined;
  afterEach(async () => {
    await drill?.close();
    drill = undefined;
  });

  /**
   * kill -9 of the orchestrator with jobs queued and running, then a new one on the same data dir
   * and port: every node re-attaches, every job completes once. Jobs that were running when it
   * died should be adopted from their nodes, not run again: counted from the nodes' logs.
   */
  async function crashAndRestart(redis: DrillOptions['redis']): Promise<void> {
    drill = await Drill.start({ redis });
    await drill.addNodes(3);
    const load = await DrillLoad.submit(drill);
    await load.midLoad();
    await drill.busyNode();
    const killedAt = performance.now();
    await drill.stopOrchestrator('SIGKILL');
    drill.mark('fault');
    await drill.restartOrchestrator();
    drill.mark('faultEnded');
    const readyAfterKillMs = performance.now() - killedAt;
    const reattachMs = await drill.waitAllConnected(REATTACH_LIMIT_MS);

    const records = await load.settled();
    expect(load.problems(records)).toEqual([]);
    expect(await load.changedSince(records)).toEqual([]);
    report(drill, `kill -9 orchestrator (${redis} redis)`, { ...load.summary(records, drill.nodes), readyAfterKillMs, readyToReattachedMs: reattachMs });
  }

  it('kill -9 and restart on the same data dir and port, external Redis: jobs complete exactly once, nodes re-attach within 10 s', async () => {
    await crashAndRestart('external');
  });

  it('kill -9 and restart on the same data dir and port, embedded Redis: jobs complete exactly once, nodes re-attach within 10 s', async () => {
    await crashAndRestart('embedded');
  });

  it('graceful SIGTERM restart mid-load: no job ends cancelled, every job completes exactly once', async () => {
    drill = await Drill.start({ redis: 'external' });
    await drill.addNodes(3);
    const load = await DrillLoad.submit(drill);
    await load.midLoad();
    await drill.busyNode();
    expect(await drill.stopOrchestrator('SIGTERM')).toBe(0);
    drill.mark('fault');
    await drill.restartOrchestrator();
    drill.mark('faultEnded');
    const reattachMs = await drill.waitAllConnected(REATTACH_LIMIT_MS);

    const records = await load.settled();
    expect(load.problems(records)).toEqual([]);
    expect(await load.changedSince(records)).toEqual([]);
    report(drill, 'SIGTERM orchestrator', { ...load.summary(records, drill.nodes), readyToReattachedMs: reattachMs });
  });
});
