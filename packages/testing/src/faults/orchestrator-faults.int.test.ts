// Fault drills on the orchestrator: runs the built CLIs (`pnpm build`); orchestrator and nodes are child processes.
import { afterEach, describe, expect, it } from 'vitest';
import { Drill, DrillLoad, REATTACH_LIMIT_MS, report } from './drill.js';
import type { DrillOptions } from './drill.js';

/** Jobs (of 300) a kill -9 may leave to run a second time: those between assignment and their running record. */
const MAX_RUN_TWICE_AFTER_CRASH = 3;

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
    const summary = load.summary(records, drill.nodes);
    report(drill, `kill -9 orchestrator (${redis} redis)`, { ...summary, readyAfterKillMs, readyToReattachedMs: reattachMs });
    // Adopted, not run again. One window remains: a job assigned in the instant before the kill,
    // whose `running` record never landed, is run again (at least once still holds).
    expect(summary.ranTwice).toBeLessThanOrEqual(MAX_RUN_TWICE_AFTER_CRASH);
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
    const summary = load.summary(records, drill.nodes);
    report(drill, 'SIGTERM orchestrator', { ...summary, readyToReattachedMs: reattachMs });
    // A graceful stop hands every job back as it is: each one on a node is adopted, none runs twice.
    expect(summary.ranTwice).toBe(0);
  });
});
