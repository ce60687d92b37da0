import { freemem, totalmem } from 'node:os';
import type { Capabilities, Heartbeat, Register } from '@conclave/protocol';
import type { InferenceBackend } from './inference-backend.js';
import type { JobRunner } from './job-runner.js';
import type { ModelStore } from './model-store.js';
import type { Outbox } from './outbox.js';

/** What the node reports about itself, read afresh for every Register and Heartbeat. */
export interface NodeStatusSources {
  nodeId: string;
  name: string;
  slots: number;
  capabilities: Capabilities;
  store: Pick<ModelStore, 'list'>;
  outbox: Pick<Outbox, 'pending'>;
  runner: Pick<JobRunner, 'runningJobs'>;
  backend?: Pick<InferenceBackend, 'name' | 'loadedModels' | 'modelBackends' | 'accelerator'>;
  /** @default os.totalmem() - os.freemem() */
  memoryUsedBytes?: () => number;
}

/**
 * The Register of a new session: with the `job_id:attempt` of each job still running (the
 * orchestrator keeps them assigned here rather than run them again) and of each result waiting for its ack.
 */
export async function registerMessage(s: NodeStatusSources): Promise<Register> {
  // Both read now, before the disk is: a job that ends moves from the runner to the outbox's
  // memory in one synchronous step, so it is in one list or the other. Read after the await, a
  // job ending meanwhile would be in neither, and the orchestrator would run it again.
  const runningJobs = s.runner.runningJobs();
  const pending = s.outbox.pending();
  return {
    nodeId: s.nodeId, name: s.name, slots: s.slots, capabilities: s.capabilities,
    models: s.store.list(),
    pendingResults: (await pending).map((r) => `${r.jobId ?? ''}:${r.attempt ?? 0}`),
    runningJobs,
  };
}

/** One heartbeat: load, memory, and the jobs running now (`sentAtMs` is the link's). */
export function heartbeatMessage(s: NodeStatusSources): Heartbeat {
  const accelerator = s.backend?.accelerator?.();
  return {
    slots: s.slots, loadedModels: s.backend?.loadedModels() ?? [],
    memoryUsedBytes: s.memoryUsedBytes?.() ?? totalmem() - freemem(), backendActive: activeBackend(s),
    runningJobs: s.runner.runningJobs(),
    ...(accelerator ? { accelerator } : {}),
    modelBackends: s.backend?.modelBackends?.() ?? [],
  };
}

/** The backend doing the work now: a Hailo backend whose sidecar is down runs everything on the CPU. */
export function activeBackend(s: Pick<NodeStatusSources, 'backend'>): string {
  const accelerator = s.backend?.accelerator?.();
  if (accelerator && accelerator.state !== 'active') return 'cpu';
  return s.backend?.name ?? '';
}
