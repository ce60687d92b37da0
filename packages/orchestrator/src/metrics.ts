import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queue } from 'bullmq';
import type { JobStore } from './job-store.js';
import { TERMINAL_STATES } from './job-store.js';
import type { NodeRegistry } from './node-registry.js';

/**
 * The orchestrator's Prometheus metrics, in a registry of its own (several orchestrators
 * can run in one test process). Gauges are read at scrape time, not maintained.
 */
export function createOrchestratorMetrics(options: { queue: Queue; jobs: JobStore; registry: NodeRegistry }): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register, prefix: 'conclave_orchestrator_' });

  new Gauge({
    name: 'conclave_jobs', help: 'Jobs in the queue by BullMQ state.', labelNames: ['state'], registers: [register],
    async collect() {
      const counts = await options.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed');
      for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
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
