import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { authError } from '@conclave/protocol';
import type { AcceleratorInfo, AuthFailure, NodeInfo } from '@conclave/protocol';
import type { NodeSession } from './node-session.js';
import { redisKeys } from './redis-keys.js';
import type { NodeSnapshot } from './scheduling/scheduler.js';

export { DEAD_AFTER_MISSED, SUSPECT_AFTER_MISSED } from './node-session.js';

/** What the registry needs of the enrollment store (RedisEnrollmentStore): ListNodes and the check at registration. */
export interface EnrollmentRecords {
  list(): Promise<Array<{ nodeId: string; status: string; fingerprint: string }>>;
  get(nodeId: string): Promise<{ status: string } | undefined>;
}

/** Something a revocation must end: a stream between its handshake and its registration. */
export interface Closable {
  close(reason: ConclaveError): void;
}

/** How long registration waits for Redis to say whether the node is enrolled and drained. */
const REGISTRATION_READ_TIMEOUT_MS = 5_000;

/** The enrollment status a node must have, read at the moment it registers. */
const REGISTERABLE_STATUS = 'accepted';

const REFUSAL_BY_STATUS: Readonly<Record<string, AuthFailure>> = { revoked: 'revoked', denied: 'denied', pending: 'pending' };

export interface NodeRegistryEvents {
  /** A node joined, left, freed a slot or changed state: waiting jobs may now find a node. */
  capacity: [];
  /** The fleet's slots may have changed: the dispatcher's concurrency follows them. */
  changed: [];
}

/**
 * Live node sessions (in memory) and the record of every node (in Redis). It tells each
 * session how many heartbeats it missed (the session decides: suspect after 3, dead after 5)
 * and is the only source of capacity events. Drained nodes are kept in Redis, so a node
 * that reconnects, or an orchestrator that restarts, keeps the operator's word.
 */
export class NodeRegistry extends EventEmitter<NodeRegistryEvents> {
  private readonly sessions = new Map<string, NodeSession>();
  /** Authenticated streams not registered yet, by node id: a revocation closes them too. */
  private readonly pending = new Map<string, Set<Closable>>();
  private monitor: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    readonly heartbeatIntervalMs: number,
  ) {
    super();
    this.setMaxListeners(0);
  }

  private enrollment: EnrollmentRecords | undefined;

  /** The enrollment store whose status (pending, accepted, denied, revoked) ListNodes shows. */
  setEnrollment(store: EnrollmentRecords): void {
    this.enrollment = store;
  }

  /**
   * Ends every stream of a revoked node at once: its session and any stream between handshake
   * and registration. The handshake refuses it from then on, and so does registration (`add`
   * reads the status again), so no stream of the node gets in after this returns.
   */
  revoke(nodeId: string, reason: string): void {
    const error = authError('orchestrator', 'revoked', { detail: reason, data: { node: nodeId } });
    this.sessions.get(nodeId)?.close(error);
    for (const stream of [...(this.pending.get(nodeId) ?? [])]) stream.close(error);
  }

  /** Keeps an authenticated, not yet registered stream where `revoke` finds it; returns the untrack. */
  trackPending(nodeId: string, stream: Closable): () => void {
    let streams = this.pending.get(nodeId);
    if (!streams) this.pending.set(nodeId, (streams = new Set()));
    streams.add(stream);
    return () => {
      streams.delete(stream);
      if (streams.size === 0 && this.pending.get(nodeId) === streams) this.pending.delete(nodeId);
    };
  }

  start(): void {
    this.monitor = setInterval(() => this.checkHeartbeats(), Math.max(50, this.heartbeatIntervalMs / 2));
    this.monitor.unref();
  }

  stop(): void {
    clearInterval(this.monitor);
    for (const session of this.sessions.values()) {
      session.close(new ConclaveError('ORCH-NET-602', { detail: 'orchestrator shutting down' }));
    }
  }

  /**
   * Lists a session if its node is still enrolled (read now: it may have been revoked since
   * its handshake); an older session of the same node is closed first. Returns whether the
   * session was listed; one that was not has been closed, with the reason.
   */
  async add(session: NodeSession): Promise<boolean> {
    // Read before the session is listed, so it never takes work it should not.
    let drained: boolean;
    let status: string;
    try {
      // Bounded: ioredis would hold the reads until Redis is back, and the stream with them.
      [drained, status] = await withTimeout(
        Promise.all([this.isDrained(session.id), this.enrollmentStatus(session.id)]), REGISTRATION_READ_TIMEOUT_MS, 'enrollment read',
      );
    } catch (err) {
      // Not known to be enrolled is not enrolled; the node retries with backoff.
      session.close(new ConclaveError('ORCH-STATE-710', { detail: 'could not read the node\'s enrollment', data: { node: session.id }, cause: err }));
      return false;
    }
    // The stream may have ended while Redis answered (a revocation closes it): a closed session is never listed.
    if (session.isClosed) return false;
    if (status !== REGISTERABLE_STATUS) {
      session.close(authError('orchestrator', REFUSAL_BY_STATUS[status] ?? 'unknown-node', {
        detail: `node is ${status} (checked at registration)`, data: { node: session.id },
      }));
      return false;
    }
    if (drained) session.setDraining(true, 'drained by an operator');
    const previous = this.sessions.get(session.id);
    if (previous && previous !== session) {
      previous.close(new ConclaveError('ORCH-NET-602', { detail: 'replaced by a new session of the same node' }));
    }
    this.sessions.set(session.id, session);
    // State, draining, slots and freed slots: suspect nodes count for no slots, and one that
    // recovers must give them back to the dispatcher.
    session.on('capacity', () => {
      if (this.sessions.get(session.id) !== session) return;
      this.emit('changed');
      this.emit('capacity');
    });
    session.once('closed', () => {
      if (this.sessions.get(session.id) !== session) return;
      this.sessions.delete(session.id);
      // A node declared dead stays 'dead' in the list until it connects again.
      void this.persist(session, session.state === 'dead' ? 'dead' : 'disconnected');
      this.emit('changed');
      this.emit('capacity');
    });
    this.emit('changed');
    this.emit('capacity');
    await this.persist(session, 'connected');
    this.redis.sadd(redisKeys.nodes(), session.id).catch(() => undefined);
    return true;
  }

  /** The node's enrollment status now; without an enrollment store (tests of the fleet alone), accepted. */
  private async enrollmentStatus(nodeId: string): Promise<string> {
    if (!this.enrollment) return REGISTERABLE_STATUS;
    return (await this.enrollment.get(nodeId))?.status ?? 'unknown';
  }

  get(nodeId: string): NodeSession | undefined {
    return this.sessions.get(nodeId);
  }

  live(): NodeSession[] {
    return [...this.sessions.values()];
  }

  snapshots(): NodeSnapshot[] {
    return this.live().map((s) => s.snapshot());
  }

  /** Slots across the nodes that take work: the dispatcher's concurrency. */
  totalSlots(): number {
    let slots = 0;
    for (const s of this.sessions.values()) if (s.schedulable) slots += s.slots;
    return slots;
  }

  /**
   * `orchestrator nodes drain`: no new work goes to the node, what it runs finishes. Kept
   * until undrained, across reconnects and restarts. Returns the node's record.
   */
  async setDraining(nodeId: string, draining: boolean): Promise<NodeInfo | undefined> {
    const known = (await this.redis.sismember(redisKeys.nodes(), nodeId)) === 1 || this.sessions.has(nodeId);
    if (!known) return undefined;
    if (draining) await this.redis.sadd(redisKeys.drainedNodes(), nodeId);
    else await this.redis.srem(redisKeys.drainedNodes(), nodeId);
    this.sessions.get(nodeId)?.setDraining(draining, draining ? 'drained by an operator' : 'undrained by an operator');
    this.logger.info('SCHED', draining ? 'node drained' : 'node undrained', { node: nodeId });
    return (await this.list()).find((n) => n.id === nodeId);
  }

  private async isDrained(nodeId: string): Promise<boolean> {
    try {
      return (await this.redis.sismember(redisKeys.drainedNodes(), nodeId)) === 1;
    } catch (err) {
      // Without Redis the node takes work: refusing it would stop the fleet on a Redis blip.
      this.logger.warn('STATE', 'could not read whether the node is drained', { node: nodeId, err });
      return false;
    }
  }

  /** Every node: live ones from memory, the rest from their last record in Redis. */
  async list(): Promise<NodeInfo[]> {
    const [ids, drained] = await Promise.all([this.redis.smembers(redisKeys.nodes()), this.redis.smembers(redisKeys.drainedNodes())]);
    const drainedIds = new Set(drained);
    const infos: NodeInfo[] = this.live().map(toNodeInfo);
    const liveIds = new Set(infos.map((n) => n.id));
    const offline = ids.filter((id) => !liveIds.has(id));
    const pipeline = this.redis.pipeline();
    for (const id of offline) pipeline.hgetall(redisKeys.node(id));
    const rows = (await pipeline.exec()) ?? [];
    rows.forEach(([, value]) => {
      const h = value as Record<string, string> | null;
      if (!h?.id) return;
      infos.push({
        id: h.id, name: h.name ?? h.id, state: h.state === 'dead' ? 'dead' : 'disconnected', slots: Number(h.slots ?? 0), running: 0,
        backends: (h.backends ?? '').split(',').filter(Boolean), lastSeenMs: Number(h.lastSeenMs ?? 0),
        cpuCores: Number(h.cpuCores ?? 0), memoryBytes: Number(h.memoryBytes ?? 0),
        features: (h.features ?? '').split(',').filter(Boolean), address: h.address ?? '', draining: drainedIds.has(h.id),
        // Its last word, kept so that a job waiting for its accelerator can name it; not serving while offline.
        accelerator: h.accelerator ? (JSON.parse(h.accelerator) as AcceleratorInfo) : null,
      });
    });
    // Nodes the enrollment store knows but that never connected (pending approval, say).
    const records = (await this.enrollment?.list()) ?? [];
    const byId = new Map(infos.map((n) => [n.id, n]));
    for (const record of records) {
      const info = byId.get(record.nodeId);
      if (info) {
        info.status = record.status;
        info.fingerprint = record.fingerprint;
      } else {
        infos.push({ id: record.nodeId, name: record.nodeId.slice(0, 12), state: 'disconnected', status: record.status, fingerprint: record.fingerprint });
      }
    }
    return infos.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  }

  /**
   * The nodes `idOrName` names, as `list` has them: the one with that id, or else every node
   * with that name (names are the operators' and may repeat). Empty for neither.
   */
  async find(idOrName: string): Promise<NodeInfo[]> {
    const nodes = await this.list();
    const byId = nodes.filter((n) => n.id === idOrName);
    return byId.length > 0 ? byId : nodes.filter((n) => n.name === idOrName);
  }

  /** Reports missed heartbeats to each session; what they mean is the session's to decide. */
  private checkHeartbeats(): void {
    const now = Date.now();
    for (const session of [...this.sessions.values()]) {
      const missed = Math.floor((now - session.lastSeenMs) / this.heartbeatIntervalMs);
      if (missed > 0) session.heartbeatsMissed(missed);
    }
  }

  private async persist(session: NodeSession, state: string): Promise<void> {
    try {
      await this.redis.hset(redisKeys.node(session.id), {
        id: session.id, name: session.name, state, slots: String(session.slots),
        backends: session.backends.join(','), features: session.features.join(','),
        cpuCores: String(session.cpuCores), memoryBytes: String(session.memoryBytes),
        lastSeenMs: String(session.lastSeenMs), address: session.address,
        accelerator: session.accelerator ? JSON.stringify(session.accelerator) : '',
      });
    } catch (err) {
      this.logger.warn('STATE', 'could not record node state', { node: session.id, err });
    }
  }
}

function toNodeInfo(s: NodeSession): NodeInfo {
  return {
    id: s.id, name: s.name, state: s.state === 'closed' ? 'disconnected' : s.state, slots: s.slots, running: s.running, backends: [...s.backends],
    backendActive: s.backendActive, loadedModels: [...s.loadedModels], models: [...s.storedModels],
    lastSeenMs: s.lastSeenMs, connectedAtMs: s.connectedAtMs, cpuCores: s.cpuCores, memoryBytes: s.memoryBytes,
    features: [...s.features], address: s.address, draining: s.draining, memoryUsedBytes: s.memoryUsedBytes,
    clockOffsetMs: s.clockOffsetMs,
    // As the node's last log batch said (the gateway's log intake); 0 before its first batch.
    logSpoolBytes: s.logShipping.spoolBytes, logDroppedTotal: s.logShipping.droppedTotal,
    accelerator: s.accelerator ?? null, modelBackends: [...s.modelBackends],
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timedOut]).finally(() => clearTimeout(timer));
}
