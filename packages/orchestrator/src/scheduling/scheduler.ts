/** What the scheduler knows of a node: a snapshot, so that choosing is a pure function. */
export interface NodeSnapshot {
  id: string;
  state: NodeState;
  slots: number;
  running: number;
  /** sha256 of models loaded in memory. */
  loadedModels: ReadonlySet<string>;
  /** sha256 of models verified on the node's disk. */
  storedModels: ReadonlySet<string>;
  backends: readonly string[];
  features: readonly string[];
  draining: boolean;
  /** When the node last got a job; spreads equal choices round-robin. */
  lastAssignedAtMs: number;
}

export type NodeState = 'connected' | 'suspect' | 'dead' | 'disconnected';

export interface JobNeeds {
  /** sha256 of the model the job runs; undefined for jobs without a model (generate). */
  modelSha256?: string;
  accelerator?: string;
  capability?: string;
}

/**
 * Picks the node for a job: only connected, non-draining nodes with a free slot, a backend for a
 * job that runs a model (the required one, if any), and the required capability; among them
 * prefer the model already loaded, then on disk, then the least loaded, then the one that waited
 * longest for work. Undefined when none fits.
 */
export function pickNode(nodes: Iterable<NodeSnapshot>, needs: JobNeeds): NodeSnapshot | undefined {
  let best: NodeSnapshot | undefined;
  let bestKey: number[] | undefined;
  for (const node of nodes) {
    if (!canRun(node, needs)) continue;
    const key = rank(node, needs);
    if (!bestKey || lessThan(key, bestKey)) {
      best = node;
      bestKey = key;
    }
  }
  return best;
}

export function canRun(node: NodeSnapshot, needs: JobNeeds): boolean {
  if (node.state !== 'connected' || node.draining) return false;
  if (node.running >= node.slots) return false;
  // A node without a backend (the model server: text generation only) runs no model at all.
  if (needs.modelSha256 && node.backends.length === 0) return false;
  if (needs.accelerator && !node.backends.includes(needs.accelerator)) return false;
  if (needs.capability && !node.features.includes(needs.capability)) return false;
  return true;
}

/** What a node offers, whether it is connected now or known from an earlier session. */
export interface NodeOffer {
  backends: readonly string[];
  features: readonly string[];
}

/**
 * Why no node of `nodes` could ever run a job, however long it waited: the accelerator or the
 * capability it needs is offered by none of them (or by none together), as Job.waiting says it.
 * Undefined when some node offers everything: the job then waits only for that node to be
 * connected, undrained and free.
 */
export function unmetNeed(nodes: Iterable<NodeOffer>, needs: Pick<JobNeeds, 'accelerator' | 'capability'>): string | undefined {
  const { accelerator, capability } = needs;
  if (!accelerator && !capability) return undefined;
  let hasAccelerator = !accelerator;
  let hasCapability = !capability;
  for (const node of nodes) {
    const offersAccelerator = !accelerator || node.backends.includes(accelerator);
    const offersCapability = !capability || node.features.includes(capability);
    if (offersAccelerator && offersCapability) return undefined;
    hasAccelerator ||= offersAccelerator;
    hasCapability ||= offersCapability;
  }
  if (!hasAccelerator) return `no node offers accelerator "${accelerator}"`;
  if (!hasCapability) return `no node offers capability "${capability}"`;
  return `no node offers both accelerator "${accelerator}" and capability "${capability}"`;
}

function rank(node: NodeSnapshot, needs: JobNeeds): number[] {
  const sha = needs.modelSha256;
  const locality = !sha ? 0 : node.loadedModels.has(sha) ? 0 : node.storedModels.has(sha) ? 1 : 2;
  return [locality, node.running / Math.max(1, node.slots), node.lastAssignedAtMs];
}

function lessThan(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x < y;
  }
  return false;
}
