// Fault drills on Redis: runs the built CLIs (`pnpm build`); orchestrator and nodes are child processes.
import { afterEach, describe, expect, it } from 'vitest';
import { isProcessRunning } from '@conclave/common';
import { waitUntil } from '../wait-until.js';
import { Drill, DrillLoad, report } from './drill.js';

describe('fault drills: Redis lost under load', () => {
  let drill: Drill | undefined;
  afterEach(async () => {
    await drill?.close();
    drill = undefined;
  });

  it('kill -9 of the external redis-server, restarted on the same port and dir: every job completes exactly once', async () => {
    drill = await Drill.start({ redis: 'external' });
    await drill.addNodes(3);
    const load = await DrillLoad.submit(drill);
    await load.midLoad();
    await drill.busyNode();
    // Down for a few heartbeats: long enough that the orchestrator notices, short of the dead timeout.
    await drill.crashExternalRedis(3 * drill.heartbeatIntervalMs);
    drill.mark('faultEnded');

    const records = await load.settled();
    expect(load.problems(records)).toEqual([]);
    expect(await load.changedSince(records)).toEqual([]);
    expect(drill.orchestrator.process.exitCode, 'the orchestrator outlived its Redis').toBeNull();
    report(drill, 'kill -9 external redis', { ...load.summary(records, drill.nodes) });
  });

  it('kill -9 of the embedded redis-server: the orchestrator restarts it and every job completes exactly once', async () => {
    drill = await Drill.start({ redis: 'embedded' });
    await drill.addNodes(3);
    const load = await DrillLoad.submit(drill);
    await load.midLoad();
    await drill.busyNode();
    const pid = await drill.embeddedRedisPid();
    process.kill(pid, 'SIGKILL');
    drill.mark('fault');
    await waitUntil(() => !isProcessRunning(pid), { what: 'the embedded redis-server gone', timeoutMs: 5_000 });

    const records = await load.settled();
    expect(load.problems(records)).toEqual([]);
    expect(drill.orchestrator.process.exitCode, 'the orchestrator outlived its Redis').toBeNull();
    expect(await drill.embeddedRedisPid(), 'a new embedded redis-server').not.toBe(pid);
    expect(await load.changedSince(records)).toEqual([]);
    report(drill, 'kill -9 embedded redis', { ...load.summary(records, drill.nodes) });
  });
});
