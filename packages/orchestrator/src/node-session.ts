import { EventEmitter } from 'node:events';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type {
  AssignJob, FetchModel__Output, Heartbeat__Output, JobResult__Output, NodeMessage__Output, OrchestratorMessage, Register__Output,
} from '@conclave/protocol';
import type { NodeSnapshot } from './scheduling/scheduler.js';

/** How a NodeSession reaches its node: the orchestrator's end of the secure session. */
export interface NodeLink {
  /** Seals and sends; false when the session is no longer open. */
  send(message: OrchestratorMessage): boolean;
  /** Resolves once the stream can take more (backpressure for model transfers). */
  writable(): Promise<void>;
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
}

interface PendingJob {
  resolve: (result: JobResult__Output) => void;
  reject: (err: Error) => void;
}

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
  /** Orchestrator clock minus the node's at its last heartbeat (one-way latency included). */
  private clockOffsetValue = 0;
  private readonly link: NodeLink;
  private readonly pending = new Map<string, PendingJob>();

  constructor(private readonly o: NodeSessionOptions) {
    super();
    const { register } = o;
    this.link = o.link;
    this.logger = o.logger;
    this.fingerprint = o.fingerprint;
    this.id = register.nodeId;
    this.name = register.name || register.nodeId;
    this.slotsValue = Math.max(1, register.slots);
    this.storedModels = new Set(register.models);
    const caps = register.capabilities;
    this.backends = caps?.backends ?? ['cpu'];
    this.backendActiveValue = caps?.backendActive ?? 'cpu';
    this.features = caps?.features ?? [];
    this.cpuCores = caps?.cpuCores ?? 0;
    this.memoryBytes = caps?.memoryBytes ?? 0;
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

  get memoryUsedBytes(): number {
    return this.memoryUsedValue;
  }

  get clockOffsetMs(): number {
    return this.clockOffsetValue;
  }

  get running(): number {
    return this.pending.size;
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
    this.logger.info('NET', 'node session closed', { reason: reason.message, code: reason.code, jobsInFlight: lost });
    this.link.close(reason);
    this.emit('closed', reason);
  }

  private lostError(): ConclaveError {
    return new ConclaveError('ORCH-NET-602', { detail: `node ${this.id}`, data: { node: this.id } });
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
    if (heartbeat.slots > 0 && heartbeat.slots !== this.slotsValue) {
      this.slotsValue = heartbeat.slots;
      this.emit('capacity');
    }
  }

  private onResult(result: JobResult__Output): void {
    // Acknowledge every result, even a late or duplicate one: results are idempotent by
    // job id and attempt, and the ack lets the node drop it from its outbox.
    this.send({ resultAck: { jobId: result.jobId, attempt: result.attempt } });
    const key = pendingKey(result.jobId, result.attempt);
    const job = this.pending.get(key);
    if (!job) {
      this.logger.debug('JOB', 'late or duplicate result ignored', { jobId: result.jobId, attempt: result.attempt });
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
