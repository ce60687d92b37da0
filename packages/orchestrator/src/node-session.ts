import { EventEmitter } from 'node:events';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type {
  AcceleratorInfo__Output, AssignJob, ChatAck__Output, ChatRequests__Output, FetchModel__Output, LogBatch__Output, Heartbeat__Output, JobResult__Output,
  ModelBackendStatus__Output, NodeMessage__Output, OrchestratorMessage, Register__Output,
} from '@conclave/protocol';
import type { NodeSnapshot } from './scheduling/scheduler.js';

/** How a NodeSession reaches its node: the orchestrator's end of the secure session. */
export interface NodeLink {
  /** Seals and sends; false when the session is no longer open. */
  send(message: OrchestratorMessage): boolean;
  /** Resolves once the stream can take more (backpressure for model transfers). */
  writable(): Promise<void>;
  /** The stream's buffer is full now: bulk senders (chat deliveries) wait for `writable()`. */
  readonly backpressured: boolean;
  /** Ends the session with a sealed CLOSE naming the reason's failure, if it has one. */
  close(reason: ConclaveError): void;
}

export interface NodeSessionOptions {
  link: NodeLink;
  register: Register__Output;
  logger: Logger;
  /** The node's transport address (`ipv4:10.0.0.5:51234`). */
  address: string;
  /** SHA256 fingerprint of the key the node proved in the handshake. */
  fingerprint: string;
  /** A node asked for a model's bytes from `offset` on. */
  onFetchModel: (session: NodeSession, request: FetchModel__Output) => void;
  /**
   * A result no job of this session waits for: from an earlier session (the node's outbox) or
   * another orchestrator's run. The handler records it if the job is still open and
   * acknowledges it; until then the session keeps it (see `resultFor`).
   */
  onUnmatchedResult: (session: NodeSession, result: JobResult__Output) => void;
  /** The most slots the node is given, whatever it claims (ORCH-SCHED-853). */
  maxSlots: number;
  /** Chat requests and acknowledgements (the gateway's NodeChatEndpoint for this session). */
  onChat?: (message: ChatFromNode) => void;
  /** Shipped log records (the gateway's log intake for this session); answered with a LogAck. */
  onLogs?: (session: NodeSession, batch: LogBatch__Output) => void;
  /** The node's log spool and drops as its last batch said. @default none shipped */
  logShipping?: () => { spoolBytes: number; droppedTotal: number };
}

/** What a node sends the chat: requests, or an acknowledgement of deliveries. */
export type ChatFromNode = { requests: ChatRequests__Output } | { ack: ChatAck__Output };

interface PendingJob {
  resolve: (result: JobResult__Output) => void;
  reject: (err: Error) => void;
  /** Set for a job taken over from an earlier orchestrator rather than sent by this one. */
  adoptedAtMs?: number;
}

/** A result the node sent that is not yet recorded: no ack until it is, so the node keeps it. */
interface ReceivedResult {
  result: JobResult__Output;
  /** The unmatched-result handler is working on it; a resend meanwhile is not handed over again. */
  handling: boolean;
}

/**
 * Results one node may have waiting to be recorded. Beyond this, further results are dropped
 * unacknowledged (the node keeps them and sends them again): a node cannot grow the
 * orchestrator's memory by sending results nobody asked for.
 */
export const MAX_UNRECORDED_RESULTS_PER_NODE = 256;

/**
 * How long an adopted job may go unlisted in the node's heartbeats (and without its result)
 * before it counts as lost: the node's Register, its resent outbox and its next heartbeat all
 * come within this after it re-attaches.
 */
export const ADOPTION_GRACE_MS = 5_000;

export interface NodeSessionEvents {
  /** The session ended; `state` says how (`dead` or `closed`). */
  closed: [ConclaveError];
  /** Something the scheduler looks at changed: state, draining, slots, a freed slot. */
  capacity: [];
}

/**
 * A node session's lifecycle. `suspect`: heartbeats missing, no new work; `dead`: closed
 * for missing heartbeats; `closed`: ended any other way. The last two are final.
 */
export type NodeSessionState = 'connected' | 'suspect' | 'dead' | 'closed';

const TRANSITIONS: Readonly<Record<NodeSessionState, readonly NodeSessionState[]>> = {
  connected: ['suspect', 'dead', 'closed'],
  suspect: ['connected', 'dead', 'closed'],
  dead: [],
  closed: [],
};

/** Missed heartbeats before a node is suspect (no new work) and dead (session closed, jobs rescheduled). */
export const SUSPECT_AFTER_MISSED = 3;
export const DEAD_AFTER_MISSED = 5;

/**
 * One node's live session on the orchestrator: the stream, what the node said about itself,
 * and the jobs it is running. Its state changes only through `transition`, which logs each
 * change with its reason. Closing the session fails the jobs in flight at once, so none hangs.
 */
export class NodeSession extends EventEmitter<NodeSessionEvents> {
  readonly id: string;
  readonly name: string;
  readonly connectedAtMs = Date.now();
  readonly storedModels: ReadonlySet<string>;
  readonly backends: readonly string[];
  readonly features: readonly string[];
  readonly cpuCores: number;
  readonly memoryBytes: number;
  readonly address: string;
  readonly logger: Logger;
  readonly fingerprint: string;
  private stateValue: NodeSessionState = 'connected';
  private drainingValue = false;
  private slotsValue: number;
  private lastSeenValue = Date.now();
  private lastAssignedValue = 0;
  private loadedModelsValue: ReadonlySet<string> = new Set<string>();
  private backendActiveValue: string;
  private memoryUsedValue = 0;
  private acceleratorValue: AcceleratorInfo__Output | undefined;
  private modelBackendsValue: readonly ModelBackendStatus__Output[] = [];
  private modelBackendMap: ReadonlyMap<string, string> = new Map();
  /** Orchestrator clock minus the node's at its last heartbeat (one-way latency included). */
  private clockOffsetValue = 0;
  private readonly link: NodeLink;
  private readonly pending = new Map<string, PendingJob>();
  private readonly received = new Map<string, ReceivedResult>();
  /** `jobId:attempt` of the jobs the node says it runs (Register, then every heartbeat). */
  private runningJobsValue: ReadonlySet<string>;
  /** Results the node said, at Register, were waiting in its outbox. */
  private readonly outboxJobs: ReadonlySet<string>;
  private slotsCapLogged = false;

  constructor(private readonly o: NodeSessionOptions) {
    super();
    const { register } = o;
    this.link = o.link;
    this.logger = o.logger;
    this.fingerprint = o.fingerprint;
    this.id = register.nodeId;
    this.name = register.name || register.nodeId;
    this.slotsValue = this.allowedSlots(register.slots);
    this.runningJobsValue = new Set(register.runningJobs);
    this.outboxJobs = new Set(register.pendingResults);
    this.storedModels = new Set(register.models);
    const caps = register.capabilities;
    this.backends = caps?.backends ?? ['cpu'];
    this.backendActiveValue = caps?.backendActive ?? 'cpu';
    this.features = caps?.features ?? [];
    this.cpuCores = caps?.cpuCores ?? 0;
    this.memoryBytes = caps?.memoryBytes ?? 0;
    this.acceleratorValue = caps?.accelerator?.kind ? caps.accelerator : undefined;
    this.address = o.address;
  }

  get state(): NodeSessionState {
    return this.stateValue;
  }

  get draining(): boolean {
    return this.drainingValue;
  }

  get slots(): number {
    return this.slotsValue;
  }

  get lastSeenMs(): number {
    return this.lastSeenValue;
  }

  get loadedModels(): ReadonlySet<string> {
    return this.loadedModelsValue;
  }

  get backendActive(): string {
    return this.backendActiveValue;
  }

  /** The node's accelerator as its last word said (Register, then each heartbeat); undefined without one. */
  get accelerator(): AcceleratorInfo__Output | undefined {
    return this.acceleratorValue;
  }

  /** Where each loaded model really runs, from the last heartbeat. */
  get modelBackends(): readonly ModelBackendStatus__Output[] {
    return this.modelBackendsValue;
  }

  get memoryUsedBytes(): number {
    return this.memoryUsedValue;
  }

  get clockOffsetMs(): number {
    return this.clockOffsetValue;
  }

  get running(): number {
    return this.pending.size;
  }

  /** Whether the node runs the job (its last word) or had its result waiting when it registered. */
  hasJob(jobId: string, attempt: number): boolean {
    const key = pendingKey(jobId, attempt);
    return this.runningJobsValue.has(key) || this.outboxJobs.has(key) || this.received.has(key);
  }

  /** A result the node sent that is not recorded yet (a Redis outage, an earlier run of the job). */
  resultFor(jobId: string, attempt: number): JobResult__Output | undefined {
    return this.received.get(pendingKey(jobId, attempt))?.result;
  }

  /** The result is recorded (or no longer needed): the node may drop it from its outbox. */
  acknowledge(jobId: string, attempt: number): void {
    const key = pendingKey(jobId, attempt);
    this.received.delete(key);
    this.send({ resultAck: { jobId, attempt } });
  }

  /** The unmatched-result handler could not record it (Redis down): a resend may try again. */
  releaseResult(jobId: string, attempt: number): void {
    const entry = this.received.get(pendingKey(jobId, attempt));
    if (entry) entry.handling = false;
  }

  get isClosed(): boolean {
    return this.stateValue === 'dead' || this.stateValue === 'closed';
  }

  /** Takes new work: connected and not draining. */
  get schedulable(): boolean {
    return this.stateValue === 'connected' && !this.drainingValue;
  }

  snapshot(): NodeSnapshot {
    return {
      id: this.id, state: this.stateValue === 'closed' ? 'disconnected' : this.stateValue, slots: this.slotsValue, running: this.running,
      loadedModels: this.loadedModelsValue, storedModels: this.storedModels, backends: this.backends,
      features: this.features, draining: this.drainingValue, lastAssignedAtMs: this.lastAssignedValue,
      name: this.name, accelerator: this.acceleratorValue, modelBackends: this.modelBackendMap,
    };
  }

  /** The one place the state changes: guarded by TRANSITIONS, logged with the reason. */
  private transition(next: NodeSessionState, reason: string, meta: Record<string, unknown> = {}): boolean {
    const from = this.stateValue;
    if (from === next) return false;
    if (!TRANSITIONS[from].includes(next)) {
      this.logger.debug('HEALTH', 'node state change refused', { from, to: next, reason });
      return false;
    }
    this.stateValue = next;
    const level = next === 'connected' || next === 'closed' ? 'info' : 'warn';
    this.logger[level]('HEALTH', 'node state changed', { from, to: next, reason, ...meta });
    this.emit('capacity');
    return true;
  }

  /**
   * The registry's heartbeat check: how many intervals passed without a word from the node.
   * The session decides what that means for its state.
   */
  heartbeatsMissed(missed: number): void {
    if (missed >= DEAD_AFTER_MISSED) {
      const reason = new ConclaveError('ORCH-HEALTH-901', { detail: `dead after ${missed} missed heartbeats`, data: { node: this.id } });
      this.end(reason, 'dead');
    } else if (missed >= SUSPECT_AFTER_MISSED && this.stateValue === 'connected') {
      this.transition('suspect', 'heartbeats missing', { missed, code: 'ORCH-HEALTH-901' });
    }
  }

  /** No new work goes to the node; what it runs finishes (`orchestrator nodes drain`). */
  setDraining(draining: boolean, reason: string): void {
    if (this.drainingValue === draining) return;
    this.drainingValue = draining;
    this.logger.info('SCHED', draining ? 'node draining' : 'node takes work again', { reason, running: this.running });
    this.emit('capacity');
  }

  send(message: OrchestratorMessage): void {
    if (this.isClosed) return;
    this.link.send(message);
  }

  /** The stream's buffer is full: what can wait (chat deliveries) waits for `drained()`. */
  get backpressured(): boolean {
    return this.link.backpressured;
  }

  /** Resolves once the stream can take more (backpressure for model transfers), or the session ended. */
  drained(): Promise<void> {
    return this.isClosed ? Promise.resolve() : this.link.writable();
  }

  /** Sends a job and resolves with its result; rejects when the session ends first. */
  assign(job: AssignJob): Promise<JobResult__Output> {
    const key = pendingKey(job.jobId ?? '', job.attempt ?? 0);
    if (this.isClosed) return Promise.reject(this.lostError());
    this.lastAssignedValue = Date.now();
    return new Promise<JobResult__Output>((resolve, reject) => {
      this.pending.set(key, { resolve, reject });
      this.send({ assign: job });
    });
  }

  /**
   * Takes over a job the node already runs (`hasJob`), sent to it by an earlier orchestrator:
   * resolves with its result, which the node sends when done (or has already sent); rejects
   * with a retryable ORCH-JOB-806 if the node stops listing it without a result.
   */
  adopt(jobId: string, attempt: number): Promise<JobResult__Output> {
    const key = pendingKey(jobId, attempt);
    if (this.isClosed) return Promise.reject(this.lostError());
    if (this.pending.has(key)) return Promise.reject(new ConclaveError('ORCH-JOB-806', { detail: `${key} is already waited for`, data: { node: this.id } }));
    const waiting = this.received.get(key);
    if (waiting) return Promise.resolve(waiting.result);
    return new Promise<JobResult__Output>((resolve, reject) => {
      this.pending.set(key, { resolve, reject, adoptedAtMs: Date.now() });
      this.emit('capacity');
    });
  }

  /** Stops waiting for a job (cancel or timeout); the node is told to stop it. */
  abandon(jobId: string, attempt: number, reason: string): void {
    const key = pendingKey(jobId, attempt);
    if (!this.pending.delete(key)) return;
    this.send({ cancel: { jobId, attempt, reason } });
    this.emit('capacity');
  }

  /** Ends the session: in-flight jobs fail with a retryable error and go back to the queue. */
  close(reason: ConclaveError): void {
    this.end(reason, 'closed');
  }

  private end(reason: ConclaveError, state: 'dead' | 'closed'): void {
    if (!this.transition(state, reason.message, { code: reason.code })) return;
    const lost = this.pending.size;
    for (const job of this.pending.values()) job.reject(reason);
    this.pending.clear();
    // Unacknowledged: the node keeps them in its outbox and sends them to the next session.
    this.received.clear();
    this.logger.info('NET', 'node session closed', { reason: reason.message, code: reason.code, jobsInFlight: lost });
    this.link.close(reason);
    this.emit('closed', reason);
  }

  private lostError(): ConclaveError {
    return new ConclaveError('ORCH-NET-602', { detail: `node ${this.id}`, data: { node: this.id } });
  }

  /** The node's log spool on disk and the records it dropped, from its last log batch. */
  get logShipping(): { spoolBytes: number; droppedTotal: number } {
    return this.o.logShipping?.() ?? { spoolBytes: 0, droppedTotal: 0 };
  }

  /** Every message the node sends after its Register goes through this one switch. */
  receive(message: NodeMessage__Output): void {
    this.lastSeenValue = Date.now();
    if (this.stateValue === 'suspect') this.transition('connected', 'node heard from again');
    switch (message.body) {
      case 'heartbeat':
        if (message.heartbeat) this.onHeartbeat(message.heartbeat);
        return;
      case 'result':
        if (message.result) this.onResult(message.result);
        return;
      case 'fetchModel':
        if (message.fetchModel) this.o.onFetchModel(this, message.fetchModel);
        return;
      case 'chat':
        if (message.chat) this.o.onChat?.({ requests: message.chat });
        return;
      case 'chatAck':
        if (message.chatAck) this.o.onChat?.({ ack: message.chatAck });
        return;
      case 'logs':
        if (message.logs) this.o.onLogs?.(this, message.logs);
        return;
      case 'goodbye':
        this.close(new ConclaveError('ORCH-NET-602', { detail: `node said goodbye: ${message.goodbye?.reason ?? ''}`, data: { node: this.id } }));
        return;
      case 'register':
        this.close(new ConclaveError('ORCH-NET-603', { detail: 'register sent twice' }));
        return;
      case undefined:
        return;
      default: {
        // A new kind in the proto is a compile error here until it has its case.
        const unhandled: never = message.body;
        this.logger.debug('NET', 'message of an unknown kind ignored', { kind: String(unhandled) });
      }
    }
  }

  /** Every field is used: placement (loaded models, slots), `nodes list` and its JSON (the rest). */
  private onHeartbeat(heartbeat: Heartbeat__Output): void {
    this.loadedModelsValue = new Set(heartbeat.loadedModels);
    if (heartbeat.backendActive) this.backendActiveValue = heartbeat.backendActive;
    this.memoryUsedValue = Number(heartbeat.memoryUsedBytes);
    if (Number(heartbeat.sentAtMs) > 0) this.clockOffsetValue = Date.now() - Number(heartbeat.sentAtMs);
    this.runningJobsValue = new Set(heartbeat.runningJobs);
    // Absent (not just empty) from a hand-built heartbeat of a test or an older encoder: none.
    const placementChanged = this.takeAccelerator(heartbeat.accelerator ?? null, heartbeat.modelBackends ?? []);
    const slots = heartbeat.slots > 0 ? this.allowedSlots(heartbeat.slots) : this.slotsValue;
    if (slots !== this.slotsValue || placementChanged) {
      this.slotsValue = slots;
      this.emit('capacity');
    }
    this.dropLostAdoptions();
  }

  /**
   * Keeps the heartbeat's accelerator and model backends; a heartbeat without an accelerator
   * (an agent that predates them, or a node without one) clears it. Returns whether placement
   * may see the node differently: the accelerator's state or a model's backend changed, which
   * may let a job waiting for the chip run (the registry's capacity event wakes it).
   */
  private takeAccelerator(accelerator: AcceleratorInfo__Output | null, modelBackends: readonly ModelBackendStatus__Output[]): boolean {
    const next = accelerator?.kind ? accelerator : undefined;
    const before = this.acceleratorValue;
    const stateChanged = before?.kind !== next?.kind || before?.state !== next?.state || before?.arch !== next?.arch;
    if (stateChanged && (before || next)) {
      const meta = { kind: next?.kind ?? before?.kind, from: before?.state ?? 'none', to: next?.state ?? 'none', ...(next?.reason ? { reason: next.reason } : {}) };
      if (next?.state === 'active' || !before) this.logger.info('HEALTH', 'node accelerator state changed', meta);
      else this.logger.warn('HEALTH', 'node accelerator state changed', meta);
    }
    this.acceleratorValue = next;
    this.modelBackendsValue = modelBackends;
    const map = new Map(modelBackends.map((m) => [m.sha256, m.backend]));
    const backendsChanged = map.size !== this.modelBackendMap.size || [...map].some(([sha, backend]) => this.modelBackendMap.get(sha) !== backend);
    this.modelBackendMap = map;
    return stateChanged || backendsChanged;
  }

  /** An adopted job the node no longer lists, with no result after the grace, is run again. */
  private dropLostAdoptions(): void {
    const now = Date.now();
    for (const [key, job] of this.pending) {
      if (job.adoptedAtMs === undefined || this.runningJobsValue.has(key) || now - job.adoptedAtMs < ADOPTION_GRACE_MS) continue;
      this.pending.delete(key);
      job.reject(new ConclaveError('ORCH-JOB-806', { detail: `node ${this.id} no longer runs ${key}`, data: { node: this.id } }));
      this.emit('capacity');
    }
  }

  /** What the node claims, up to the orchestrator's maximum; at least one. */
  private allowedSlots(claimed: number): number {
    const { maxSlots } = this.o;
    if (claimed > maxSlots && !this.slotsCapLogged) {
      this.slotsCapLogged = true;
      this.logger.failure(new ConclaveError('ORCH-SCHED-853', { detail: `claims ${claimed}, given ${maxSlots}`, data: { node: this.id } }), {}, 'warn');
    }
    return Math.max(1, Math.min(claimed, maxSlots));
  }

  /**
   * A result is acknowledged only once recorded (by the dispatcher for the job it waits on,
   * by the unmatched-result handler otherwise): a result acknowledged and then lost to a
   * Redis outage would be lost for good, since the node drops what is acknowledged.
   */
  private onResult(result: JobResult__Output): void {
    const key = pendingKey(result.jobId, result.attempt);
    const known = this.received.get(key);
    if (known?.handling) return;
    const job = this.pending.get(key);
    if (!known) {
      // The cap is for results nobody waits for: one a job waits on is always taken.
      if (!job && this.received.size >= MAX_UNRECORDED_RESULTS_PER_NODE) {
        this.logger.debug('JOB', 'result dropped unacknowledged: too many waiting to be recorded', { jobId: result.jobId, attempt: result.attempt });
        return;
      }
      this.received.set(key, { result, handling: true });
    } else {
      known.handling = true;
    }
    if (!job) {
      this.o.onUnmatchedResult(this, result);
      return;
    }
    this.pending.delete(key);
    job.resolve(result);
    this.emit('capacity');
  }
}

function pendingKey(jobId: string, attempt: number): string {
  return `${jobId}:${attempt}`;
}
