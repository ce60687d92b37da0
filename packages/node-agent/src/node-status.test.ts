import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import type { AssignJob__Output, NodeMessage } from '@conclave/protocol';
import { JobRunner } from './job-runner.js';
import { ModelFetcher } from './model-fetcher.js';
import { ModelStore } from './model-store.js';
import { heartbeatMessage, registerMessage, type NodeStatusSources } from './node-status.js';
import { Outbox } from './outbox.js';

const job = (jobId: string, attempt: number): AssignJob__Output => ({ jobId, attempt, kind: 'hold' }) as unknown as AssignJob__Output;

describe('Register and Heartbeat', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'node-status-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('carry the job_id:attempt of every job running now, and the unacknowledged results', async () => {
    const sent: NodeMessage[] = [];
    const send = (m: NodeMessage) => { sent.push(m); return true; };
    const store = new ModelStore({ dir: join(dir, 'models'), logger: nullLogger });
    const outbox = new Outbox(join(dir, 'outbox'));
    await outbox.open();
    const release: Array<() => void> = [];
    const runner = new JobRunner({
      fetcher: new ModelFetcher(store, send, nullLogger), outbox, logger: nullLogger, send,
      extraKinds: { hold: () => new Promise((resolve) => release.push(() => resolve({}))) },
    });
    const sources: NodeStatusSources = {
      nodeId: 'n1', name: 'board', slots: 2, capabilities: { cpuCores: 4 }, store, outbox, runner,
    };
    expect((await registerMessage(sources)).runningJobs).toEqual([]);
    expect(heartbeatMessage(sources).runningJobs).toEqual([]);

    const first = runner.run(job('job-a', 1));
    const second = runner.run(job('job-b', 3));
    expect(runner.runningJobs()).toEqual(['job-a:1', 'job-b:3']);
    expect(await registerMessage(sources)).toMatchObject({ nodeId: 'n1', name: 'board', slots: 2, runningJobs: ['job-a:1', 'job-b:3'], pendingResults: [] });
    expect(heartbeatMessage(sources)).toMatchObject({ slots: 2, runningJobs: ['job-a:1', 'job-b:3'] });

    release.shift()?.();
    await first;
    expect(heartbeatMessage(sources).runningJobs).toEqual(['job-b:3']);
    // Done and sent, not yet acknowledged: a pending result, no longer a running job.
    expect(await registerMessage(sources)).toMatchObject({ runningJobs: ['job-b:3'], pendingResults: ['job-a:1'] });
    release.shift()?.();
    await second;
    expect(heartbeatMessage(sources).runningJobs).toEqual([]);
  });

  it('Register lists a job that finishes while the outbox reads the disk, as running or as pending', async () => {
    const send = () => true;
    const store = new ModelStore({ dir: join(dir, 'models'), logger: nullLogger });
    const outbox = new Outbox(join(dir, 'outbox'));
    await outbox.open();
    let release: () => void = () => undefined;
    const runner = new JobRunner({
      fetcher: new ModelFetcher(store, send, nullLogger), outbox, logger: nullLogger, send,
      extraKinds: { hold: () => new Promise((resolve) => (release = () => resolve({}))) },
    });
    const running = runner.run(job('job-c', 2));
    // The real outbox, whose disk read is slow enough for the job to end during it.
    const slowOutbox: NodeStatusSources['outbox'] = {
      pending: async () => {
        const listed = outbox.pending();
        release();
        await running;
        expect(runner.runningJobs()).toEqual([]);
        return listed;
      },
    };
    const register = await registerMessage({ nodeId: 'n1', name: 'board', slots: 1, capabilities: {}, store, outbox: slowOutbox, runner });
    expect([...(register.runningJobs ?? []), ...(register.pendingResults ?? [])]).toEqual(['job-c:2']);
  });
});
