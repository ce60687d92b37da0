import { describe, expect, it } from 'vitest';
import type { JobCount } from './job-store.js';
import { MAX_MODEL_LABELS, OTHER_MODELS_LABEL, jobCountsByLabel } from './metrics.js';

describe('jobCountsByLabel', () => {
  it('keeps every model while there are few', () => {
    const counts: JobCount[] = [
      { state: 'queued', model: 'a', count: 2 }, { state: 'running', model: 'a', count: 1 }, { state: 'completed', model: '', count: 7 },
    ];
    expect(jobCountsByLabel(counts)).toEqual(counts);
  });

  it('names the models with the most jobs and sums the rest under one label, per state', () => {
    const counts: JobCount[] = [];
    for (let i = 0; i < MAX_MODEL_LABELS + 5; i++) {
      // m0 has the most jobs, m24 the fewest.
      counts.push({ state: 'completed', model: `m${i}`, count: 100 - i });
      counts.push({ state: 'queued', model: `m${i}`, count: 1 });
    }
    const labelled = jobCountsByLabel(counts);
    const models = new Set(labelled.map((c) => c.model));
    expect(models.size).toBe(MAX_MODEL_LABELS + 1);
    expect(models.has('m0')).toBe(true);
    expect(models.has(`m${MAX_MODEL_LABELS - 1}`)).toBe(true);
    expect(models.has(`m${MAX_MODEL_LABELS}`)).toBe(false);
    const other = (state: string) => labelled.find((c) => c.model === OTHER_MODELS_LABEL && c.state === state)?.count;
    expect(other('queued')).toBe(5);
    expect(other('completed')).toBe([20, 21, 22, 23, 24].reduce((sum, i) => sum + 100 - i, 0));
    // Nothing is lost: the totals per state stay the same.
    const total = (list: JobCount[], state: string) => list.filter((c) => c.state === state).reduce((sum, c) => sum + c.count, 0);
    expect(total(labelled, 'completed')).toBe(total(counts, 'completed'));
  });
});
