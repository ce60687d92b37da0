// WatchJob's ordering against a job store whose first read returns after an update: the race
// that left some streams open for ever.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { nullLogger } from '@conclave/common';
import type { ControlServiceOptions } from './control-service.js';
import { createControlService } from './control-service.js';
import type { JobRecord } from './job-store.js';

const record = (state: JobRecord['state']): JobRecord => ({
  id: 'j1', state, kind: 'infer', model: 'm', node: '', attempts: 1, createdAtMs: 1, finishedAtMs: 0, runMs: 0,
});

/** A WatchJob call that records what it was sent and how often it was ended. */
function fakeCall() {
  const writes: string[] = [];
  let ends = 0;
  const call = Object.assign(new EventEmitter(), {
    request: { id: 'j1' },
    write: (job: { state: string }) => {
      if (ends > 0) throw new Error('write after end');
      writes.push(job.state);
      return true;
    },
    end: () => {
      ends += 1;
    },
  });
  return { call, writes, ends: () => ends };
}

function serviceWith(jobs: EventEmitter & { get(id: string): Promise<JobRecord | undefined> }) {
  return createControlService({ jobs, logger: nullLogger } as unknown as ControlServiceOptions);
}

describe('WatchJob', () => {
  it('sends a final update that beats the first read, then ends once; the older read is not sent after it', async () => {
    let answerRead: (r: JobRecord) => void = () => undefined;
    const jobs = Object.assign(new EventEmitter(), {
      get: () => new Promise<JobRecord>((resolve) => (answerRead = resolve)),
    });
    const { call, writes, ends } = fakeCall();
    (serviceWith(jobs).WatchJob as unknown as (call: unknown) => void)(call);
    jobs.emit('update', record('completed'));
    answerRead(record('running'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toEqual(['JOB_STATE_COMPLETED']);
    expect(ends()).toBe(1);
    expect(jobs.listenerCount('update')).toBe(0);
  });

  it('sends the first read, then the updates, and ends at the terminal one', async () => {
    const jobs = Object.assign(new EventEmitter(), { get: () => Promise.resolve(record('queued')) });
    const { call, writes, ends } = fakeCall();
    (serviceWith(jobs).WatchJob as unknown as (call: unknown) => void)(call);
    await new Promise((resolve) => setImmediate(resolve));
    jobs.emit('update', record('running'));
    jobs.emit('update', record('completed'));
    jobs.emit('update', record('completed'));
    expect(writes).toEqual(['JOB_STATE_QUEUED', 'JOB_STATE_RUNNING', 'JOB_STATE_COMPLETED']);
    expect(ends()).toBe(1);
  });
});
