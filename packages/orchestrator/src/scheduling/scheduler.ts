/** A node's accelerator as placement sees it (AcceleratorInfo's fields that matter here). */
export interface AcceleratorState {
  /** "hailo". */
  kind: string;
  /** "active", "unavailable" or "absent". */
  state: string;
  /** "HAILO8" or "HAILO8L"; a HEF's chip is this lowercased. */
  arch?: string;
  /** Why it is not active. */
  reason?: string;
}

/** What a node offers, whether it is connected now or known from an earlier session. */
export interface NodeOffer {
  /** For messages: the operator's name of the node. */
  name?: string;
  backends: readonly string[];
  features: readonly string[];
  /** Undefined (or null, as NodeInfo has it) on a node without one. */
  accelerator?: AcceleratorState | null | undefined;
}

/** What the scheduler knows of a node: a snapshot, so that choosing is a pure function. */
export interface NodeSnapshot extends NodeOffer {
  id: string;
  state: NodeState;
  slots: number;
  running: number;
  /** sha256 of models loaded in memory. */
  loadedModels: ReadonlySet<string>;
  /** sha256 of models verified on the node's disk. */
  storedModels: ReadonlySet<string>;
  draining: boolean;
  /** When the node last got a job; spreads equal choices round-robin. */
  lastAssignedAtMs: number;
  /** Where each loaded model really runs ("hailo" or "cpu"), by sha256, as the node's last heartbeat said. */
  modelBackends?: ReadonlyMap<string, string>;
}

export type NodeState = 'connected' | 'suspect' | 'dead' | 'disconnected';

export interface JobNeeds {
  /** sha256 of the model the job runs; undefined for jobs without a model (generate). */
  modelSha256?: string;
  /** Required: "cpu" (a CPU backend) or an accelerator kind ("hailo") active on the node. */
  accelerator?: string;
  /** Preferred accelerator kind: nodes where the model runs on it rank first. Ignored with `accelerator`. */
  preferAccelerator?: string;
  capability?: string;
  /**
   * The chips the job's model has a HEF for ("hailo8", "hailo8l"). Undefined for a job without a
   * model, or queued before bundles existed: not known, so a node is not judged by it.
   */
  hefChips?: readonly string[];
}

/** The backend that needs no accelerator; every other name in `accelerator` is an accelerator kind. */
const CPU_BACKEND = 'cpu';
/** The most nodes a waiting reason names. */
const NAMED_NODES_MAX = 3;

/**
 * Picks the node for a job. Only connected, non-draining nodes with a free slot, a backend for a
 * job that runs a model, and the required capability; a required accelerator (`hailo`) must be
 * active on the node now, the model must have a HEF for the node's chip, and the model must not
 * have fallen back to the CPU there (the job waits for the chip instead).
 *
 * Among those, lowest key first (a lexicographic rank):
 * 1. with `preferAccelerator`: nodes where the model runs on that accelerator, or would (active,
 *    not loaded yet, a HEF for the chip), before every other;
 * 2. nodes where the model has fallen back to the CPU (the node's accelerator is there, the model
 *    has a HEF for its chip, and it runs on the CPU) last: worth far less for that model than a
 *    node where it runs on the chip, and no better than a CPU node, whose CPU is not the fallback
 *    of a failing device;
 * 3. the model loaded, then on disk, then neither;
 * 4. the model running (or able to run) on an accelerator before the CPU, at equal locality;
 * 5. the least loaded (running / slots), then the one that waited longest for work.
 * Undefined when none fits.
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
  if (needs.accelerator && !offersRequired(node, needs)) return false;
  if (needs.capability && !node.features.includes(needs.capability)) return false;
  return true;
}

function offersRequired(node: NodeSnapshot, needs: JobNeeds): boolean {
  const kind = needs.accelerator ?? '';
  if (kind === CPU_BACKEND) return node.backends.includes(CPU_BACKEND);
  if (!isActive(node, kind) || !hasHefFor(node, needs)) return false;
  return !needs.modelSha256 || node.modelBackends?.get(needs.modelSha256) === undefined || node.modelBackends.get(needs.modelSha256) === kind;
}

/** The node's accelerator of `kind` serves now. */
export function isActive(node: NodeOffer, kind: string): boolean {
  return node.accelerator?.kind === kind && node.accelerator.state === 'active';
}

/** The HEF chip a node's accelerator takes: its arch lowercased (HAILO8 → hailo8); '' when unknown. */
export function chipOf(node: NodeOffer): string {
  return (node.accelerator?.arch ?? '').toLowerCase();
}

/** The job's model has a HEF for the node's chip (true for a job without a model, or chips not known). */
function hasHefFor(node: NodeOffer, needs: Pick<JobNeeds, 'hefChips'>): boolean {
  if (!needs.hefChips) return true;
  return needs.hefChips.includes(chipOf(node));
}

/** The model runs on accelerator `kind` on the node, or would (active, not loaded, a HEF for its chip). */
function runsOn(node: NodeSnapshot, needs: JobNeeds, kind: string): boolean {
  const reported = needs.modelSha256 ? node.modelBackends?.get(needs.modelSha256) : undefined;
  if (reported !== undefined) return reported === kind;
  return isActive(node, kind) && hasHefFor(node, needs);
}

/** The node has an accelerator the model has a HEF for, and the model runs on its CPU instead. */
function fellBack(node: NodeSnapshot, needs: JobNeeds): boolean {
  const accelerator = node.accelerator;
  if (!needs.modelSha256 || !accelerator?.kind || accelerator.state === 'absent') return false;
  return node.modelBackends?.get(needs.modelSha256) === CPU_BACKEND && hasHefFor(node, needs);
}

/**
 * Why no node of `nodes` could ever run a job, however long it waited, as Job.waiting says it:
 * the accelerator or the capability it needs is offered by none of them (or by none together),
 * or a required accelerator is active on none of them (each node that has it named with its
 * reason), or none that has it active has the chip the model was compiled for. Undefined when
 * some node offers everything: the job then waits only for that node to be free.
 */
export function unmetNeed(
  nodes: Iterable<NodeOffer>, needs: Pick<JobNeeds, 'accelerator' | 'capability' | 'hefChips'>,
): string | undefined {
  const { accelerator, capability } = needs;
  if (!accelerator && !capability) return undefined;
  const cpu = accelerator === CPU_BACKEND;
  let hasAccelerator = !accelerator;
  let hasCapability = !capability;
  let hasActive = !accelerator || cpu;
  const inactive: string[] = [];
  const activeChips: string[] = [];
  for (const node of nodes) {
    const present = !accelerator || (cpu ? node.backends.includes(CPU_BACKEND) : hasKind(node, accelerator));
    const active = !accelerator || cpu ? present : isActive(node, accelerator);
    const fits = !accelerator || cpu || !active || hasHefFor(node, needs);
    const offersCapability = !capability || node.features.includes(capability);
    if (present && active && fits && offersCapability) return undefined;
    hasAccelerator ||= present;
    hasActive ||= active;
    hasCapability ||= offersCapability;
    if (accelerator && !cpu && present && !active) inactive.push(describeInactive(node, accelerator));
    if (accelerator && !cpu && active && !fits) activeChips.push(`${node.name ?? '?'}: ${chipOf(node) || 'chip unknown'}`);
  }
  if (!hasAccelerator) return `no node offers accelerator "${accelerator}"`;
  if (!hasActive) return `no node has accelerator "${accelerator}" active (${namedList(inactive)})`;
  if (activeChips.length > 0 && hasCapability) {
    const chips = needs.hefChips && needs.hefChips.length > 0 ? needs.hefChips.join(', ') : 'none';
    return `no node with accelerator "${accelerator}" active has a chip the model has a HEF for (HEFs: ${chips}; ${namedList(activeChips)})`;
  }
  if (!hasCapability) return `no node offers capability "${capability}"`;
  return `no node offers both accelerator "${accelerator}" and capability "${capability}"`;
}

/** The node has an accelerator of `kind`, serving or not (a node that names it among its backends counts). */
function hasKind(node: NodeOffer, kind: string): boolean {
  return (node.accelerator?.kind === kind && node.accelerator.state !== 'absent') || node.backends.includes(kind);
}

function describeInactive(node: NodeOffer, kind: string): string {
  const a = node.accelerator;
  const state = a?.kind === kind ? a.state || 'state unknown' : 'not reported';
  return `${node.name ?? '?'}: ${kind} ${state}${a?.kind === kind && a.reason ? `: ${a.reason}` : ''}`;
}

function namedList(items: readonly string[]): string {
  const shown = items.slice(0, NAMED_NODES_MAX).join('; ');
  return items.length > NAMED_NODES_MAX ? `${shown}; and ${items.length - NAMED_NODES_MAX} more` : shown;
}

function rank(node: NodeSnapshot, needs: JobNeeds): number[] {
  const sha = needs.modelSha256;
  const preferred = needs.preferAccelerator && !needs.accelerator ? (runsOn(node, needs, needs.preferAccelerator) ? 0 : 1) : 0;
  const fallback = fellBack(node, needs) ? 1 : 0;
  const locality = !sha ? 0 : node.loadedModels.has(sha) ? 0 : node.storedModels.has(sha) ? 1 : 2;
  const kind = node.accelerator?.kind;
  const onCpu = !sha || (kind && runsOn(node, needs, kind)) ? 0 : 1;
  return [preferred, fallback, locality, onCpu, node.running / Math.max(1, node.slots), node.lastAssignedAtMs];
}

function lessThan(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x < y;
  }
  return false;
}
