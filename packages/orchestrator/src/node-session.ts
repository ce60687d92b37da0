import { EventEmitter } from 'node:events';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type {
  AssignJob, FetchModel__Output, Heartbeat__Output, JobResult__Output, NodeMessage__Output, OrchestratorMessage, Register__Output,
} from '@conclave/protocol';
import type { NodeSnapshot, NodeState } from './scheduling/scheduler.js';

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
  closed: [ConclaveError];
  /** A suspect node was heard from again: it can take work. */
  recovered: [];
}

/**
 * One node's live session on the orchestrator: the stream, what the node said about itself,
 * and the jobs it is running. Closing the session fails those jobs at once, so none hangs.
 */
export class NodeSession extends EventEmitter<NodeSessionEvents> {
  readonly id: string;
  readonly name: string;
  readonly connectedAtMs = Date.now();
  slots: number;
  state: NodeState = 'connected';
  draining = false;
  lastSeenMs = Date.now();
  lastAssignedAtMs = 0;
  loadedModels = new Set<string>();
  storedModels: Set<string>;
  backends: string[];
  backendActive: string;
  features: string[];
  cpuCores: number;
  memoryBytes: number;
  readonly address: string;
  readonly logger: Logger;
  readonly fingerprint: string;
  private readonly link: NodeLink;
  private readonly pending = new Map<string, PendingJob>();
  private closed = false;

  constructor(private readonly o: NodeSessionOptions) {
    super();
    const { register } = o;
    this.link = o.link;
    this.logger = o.logger;
    this.fingerprint = o.fingerprint;
    this.id = register.nodeId;
    this.name = register.name || register.nodeId;
    this.slots = Math.max(1, register.slots);
    this.storedModels = new Set(register.models);
    const caps = register.capabilities;
    this.backends = caps?.backends ?? ['cpu'];
    this.backendActive = caps?.backendActive ?? 'cpu';
    this.features = caps?.features ?? [];
    this.cpuCores = caps?.cpuCores ?? 0;
    this.memoryBytes = caps?.memoryBytes ?? 0;
    this.address = o.address;
  }

  get running(): number {
    return this.pending.size;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  snapshot(): NodeSnapshot {
    return {
      id: this.id, state: this.state, slots: this.slots, running: this.running,
      loadedModels: this.loadedModels, storedModels: this.storedModels, backends: this.backends,
      features: this.features, draining: this.draining, lastAssignedAtMs: this.lastAssignedAtMs,
    };
  }

  send(message: OrchestratorMessage): void {
    if (this.closed) return;
    this.link.send(message);
  }

  /** Resolves once the stream can take more (backpressure for model transfers), or the session ended. */
  drained(): Promise<void> {
    return this.closed ? Promise.resolve() : this.link.writable();
  }

  /** Sends a job and resolves with its result; rejects when the session ends first. */
  assign(job: AssignJob): Promise<JobResult__Output> {
    const key = pendingKey(job.jobId ?? '', job.attempt ?? 0);
    if (this.closed) return Promise.reject(this.lostError());
    this.lastAssignedAtMs = Date.now();
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
  }

  /** Ends the session: in-flight jobs fail with a retryable error and go back to the queue. */
  close(reason: ConclaveError): void {
    if (this.closed) return;
    this.closed = true;
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
    this.lastSeenMs = Date.now();
    if (this.state === 'suspect') {
      this.state = 'connected';
      this.logger.info('HEALTH', 'node heard from again');
      this.emit('recovered');
    }
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

  private onHeartbeat(heartbeat: Heartbeat__Output): void {
    this.loadedModels = new Set(heartbeat.loadedModels);
    if (heartbeat.slots > 0) this.slots = heartbeat.slots;
    if (heartbeat.backendActive) this.backendActive = heartbeat.backendActive;
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
  }
}

function pendingKey(jobId: string, attempt: number): string {
  return `${jobId}:${attempt}`;
}
