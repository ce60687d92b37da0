import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queue } from 'bullmq';
import type { JobCount, JobStore } from './job-store.js';
import { TERMINAL_STATES } from './job-store.js';
import type { AcceleratorInfo__Output, ModelBackendStatus__Output } from '@conclave/protocol';
import type { ModelRecord } from './model-registry.js';
import type { NodeRegistry } from './node-registry.js';

/** What the node gauges read of a live session. */
export interface NodeAcceleratorView {
  id: string;
  name: string;
  accelerator: AcceleratorInfo__Output | undefined;
  modelBackends: readonly ModelBackendStatus__Output[];
}

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

/**
 * The per-node accelerator and model-backend gauges, from the live sessions. A model is labelled
 * by its name in the registry, or by its digest's first 12 hex digits when no name has it.
 */
export function registerNodeAcceleratorGauges(
  register: Registry, nodes: () => readonly NodeAcceleratorView[], modelNames: () => Promise<ReadonlyMap<string, string>>,
): void {
  const withAccelerator = () => nodes().filter((n) => n.accelerator?.kind);
  new Gauge({
    name: 'conclave_node_accelerator_info',
    help: "1 per connected node with an accelerator, its facts as labels; state is active, unavailable or absent.",
    labelNames: ['node', 'name', 'kind', 'arch', 'state', 'firmware', 'hailort', 'driver'], registers: [register],
    collect() {
      this.reset();
      for (const { id, name, accelerator: a } of withAccelerator()) {
        if (!a) continue;
        this.set({
          node: id, name, kind: a.kind, arch: a.arch, state: a.state, firmware: a.firmwareVersion, hailort: a.hailortVersion, driver: a.driverVersion,
        }, 1);
      }
    },
  });
  const perNode = (name: string, help: string, value: (a: AcceleratorInfo__Output) => number | undefined) =>
    new Gauge({
      name, help, labelNames: ['node'], registers: [register],
      collect() {
        this.reset();
        for (const { id, accelerator } of withAccelerator()) {
          const v = accelerator ? value(accelerator) : undefined;
          if (v !== undefined) this.set({ node: id }, v);
        }
      },
    });
  // 0 means "not known" on the wire: such a node has no sample rather than a false 0.
  perNode('conclave_node_accelerator_temperature_celsius', "The board's SoC temperature, as the node last reported it.", (a) => (a.temperatureC > 0 ? a.temperatureC : undefined));
  perNode('conclave_node_accelerator_pcie_gen', "The accelerator's PCIe link generation (2 caps a Hailo-8 near 358 fps at 640x640x3).", (a) => (a.pcieGen > 0 ? a.pcieGen : undefined));
  perNode('conclave_node_accelerator_pcie_width', "The accelerator's PCIe link width (lanes).", (a) => (a.pcieWidth > 0 ? a.pcieWidth : undefined));
  perNode('conclave_node_accelerator_throttled', "1 when the board's firmware reports throttling or under-voltage.", (a) => (a.throttled ? (Number(a.throttled) !== 0 ? 1 : 0) : undefined));

  const perModel = async (each: (labels: { node: string; model: string }, m: ModelBackendStatus__Output) => void) => {
    const names = await modelNames();
    for (const node of nodes()) {
      for (const m of node.modelBackends) each({ node: node.id, model: names.get(m.sha256) ?? m.sha256.slice(0, 12) }, m);
    }
  };
  new Gauge({
    name: 'conclave_node_model_backend',
    help: '1 per model loaded on a connected node, labelled with the backend it really runs on there (hailo or cpu).',
    labelNames: ['node', 'model', 'backend'], registers: [register],
    async collect() {
      this.reset();
      await perModel((labels, m) => this.set({ ...labels, backend: m.backend }, 1));
    },
  });
  new Gauge({
    name: 'conclave_node_model_p50_seconds', help: "A loaded model's median run time on the node, as it reported it.",
    labelNames: ['node', 'model'], registers: [register],
    async collect() {
      this.reset();
      await perModel((labels, m) => {
        if (Number(m.runs) > 0) this.set(labels, m.p50Ms / 1000);
      });
    },
  });
  // Gauges, not counters: the node's counts start again when it reloads the model or restarts.
  new Gauge({
    name: 'conclave_node_model_runs', help: 'Runs of a loaded model on the node since it loaded it.',
    labelNames: ['node', 'model'], registers: [register],
    async collect() {
      this.reset();
      await perModel((labels, m) => this.set(labels, Number(m.runs)));
    },
  });
  new Gauge({
    name: 'conclave_node_model_errors', help: 'Failed runs of a loaded model on the node since it loaded it (a Hailo failure that fell back counts).',
    labelNames: ['node', 'model'], registers: [register],
    async collect() {
      this.reset();
      await perModel((labels, m) => this.set(labels, Number(m.errors)));
    },
  });
}

export function createOrchestratorMetrics(options: {
  queue: Queue; jobs: JobStore; registry: NodeRegistry;
  /** Names the models in the node gauges. @default digests only */
  models?: { list(): Promise<ModelRecord[]> };
}): Registry {
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
  registerNodeAcceleratorGauges(
    register,
    () => options.registry.live(),
    async () => new Map((await (options.models?.list() ?? Promise.resolve([]))).map((m) => [m.sha256, m.name])),
  );
  options.jobs.on('update', (record) => {
    if (!TERMINAL_STATES.has(record.state)) return;
    finished.inc({ kind: record.kind, state: record.state });
    duration.observe({ kind: record.kind, state: record.state }, Math.max(0, record.finishedAtMs - record.createdAtMs) / 1000);
  });
  return register;
}
