import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queue } from 'bullmq';
import type { JobCount, JobStore } from './job-store.js';
import { TERMINAL_STATES } from './job-store.js';
import type { NodeRegistry } from './node-registry.js';

/**
 * The orchestrator's Prometheus metrics, in a registry of its own (several orchestrators
 * can run in one test process). Gauges are read at scrape time, not maintained.
 */
/**
 * Models `conclave_jobs` names, at most: those with the most jobs; the others are summed under
 * OTHER_MODELS_LABEL, so that many models cannot grow the series without bound.
 */
export const MAX_MODEL_LABELS = 20;
export const OTHER_MODELS_LABEL = '(other)';

/** The counts as `conclave_jobs` labels them: the MAX_MODEL_LABELS largest models by name, the rest as one. */
export function jobCountsByLabel(counts: readonly JobCount[]): JobCount[] {
  const byModel = new Map<string, number>();
  for (const c of counts) byModel.set(c.model, (byModel.get(c.model) ?? 0) + c.count);
  const named = new Set(
    [...byModel.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, MAX_MODEL_LABELS).map(([model]) => model),
  );
  const out = new Map<string, JobCount>();
  for (const c of counts) {
    const model = named.has(c.model) ? c.model : OTHER_MODELS_LABEL;
    const key = `${c.state}|${model}`;
    const entry = out.get(key) ?? { state: c.state, model, count: 0 };
    entry.count += c.count;
    out.set(key, entry);
  }
  return [...out.values()];
}

export function createOrchestratorMetrics(options: { queue: Queue; jobs: JobStore; registry: NodeRegistry }): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register, prefix: 'conclave_orchestrator_' });

  new Gauge({
    name: 'conclave_queue_jobs', help: 'Entries in the BullMQ queue by BullMQ state.', labelNames: ['state'], registers: [register],
    async collect() {
      const counts = await options.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed');
      for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
    },
  });
  new Gauge({
    name: 'conclave_jobs',
    help: 'Jobs by state and model, from the job index: queued and running ones, and those ended within the result TTL. model is empty for jobs without one (generate).',
    labelNames: ['state', 'model'], registers: [register],
    async collect() {
      this.reset();
      for (const { state, model, count } of jobCountsByLabel(await options.jobs.counts())) this.set({ state, model }, count);
    },
  });
  const finished = new Counter({
    name: 'conclave_jobs_finished_total', help: 'Jobs that reached a terminal state.', labelNames: ['kind', 'state'], registers: [register],
  });
  const duration = new Histogram({
    name: 'conclave_job_duration_seconds', help: 'From submission to terminal state.', labelNames: ['kind', 'state'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: [register],
  });
  new Gauge({
    name: 'conclave_nodes_connected', help: 'Nodes with a live session, by state.', labelNames: ['state'], registers: [register],
    collect() {
      this.reset();
      for (const node of options.registry.live()) this.inc({ state: node.state });
    },
  });
  options.jobs.on('update', (record) => {
    if (!TERMINAL_STATES.has(record.state)) return;
    finished.inc({ kind: record.kind, state: record.state });
    duration.observe({ kind: record.kind, state: record.state }, Math.max(0, record.finishedAtMs - record.createdAtMs) / 1000);
  });
  return register;
}
