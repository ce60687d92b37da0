import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { authError } from '@conclave/protocol';
import type { NodeInfo } from '@conclave/protocol';
import type { NodeSession } from './node-session.js';
import { redisKeys } from './redis-keys.js';
import type { NodeSnapshot } from './scheduling/scheduler.js';

/** Missed heartbeats before a node is suspect (no new work) and dead (session closed, jobs rescheduled). */
export const SUSPECT_AFTER_MISSED = 3;
export const DEAD_AFTER_MISSED = 5;

/** What ListNodes needs of the enrollment store (RedisEnrollmentStore). */
export interface EnrollmentRecords {
  list(): Promise<Array<{ nodeId: string; status: string; fingerprint: string }>>;
}

export interface NodeRegistryEvents {
  /** A node joined, left, or freed a slot: waiting jobs may now find a node. */
  capacity: [];
  changed: [];
}

/**
 * Live node sessions (in memory) and the record of every node (in Redis). Watches
 * heartbeats: suspect after 3 missed, dead after 5.
 */
export class NodeRegistry extends EventEmitter<NodeRegistryEvents> {
  private readonly sessions = new Map<string, NodeSession>();
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

  /** Ends a revoked node's session at once; the handshake refuses it from then on. */
  revoke(nodeId: string, reason: string): void {
    this.sessions.get(nodeId)?.close(authError('orchestrator', 'revoked', { detail: reason, data: { node: nodeId } }));
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

  /** Adds a session; an older session of the same node is closed first. */
  async add(session: NodeSession): Promise<void> {
    const previous = this.sessions.get(session.id);
    if (previous && previous !== session) {
      previous.close(new ConclaveError('ORCH-NET-602', { detail: 'replaced by a new session of the same node' }));
    }
    this.sessions.set(session.id, session);
    // Suspect nodes count for no slots; one that recovers must give them back to the dispatcher.
    session.on('recovered', () => {
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
    await this.persist(session, 'connected');
    this.redis.sadd(redisKeys.nodes(), session.id).catch(() => undefined);
    this.emit('changed');
    this.emit('capacity');
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

  /** Free slots across connected nodes: the dispatcher's concurrency. */
  totalSlots(): number {
    let slots = 0;
    for (const s of this.sessions.values()) if (s.state === 'connected') slots += s.slots;
    return slots;
  }

  /** Every node: live ones from memory, the rest from their last record in Redis. */
  async list(): Promise<NodeInfo[]> {
    const ids = await this.redis.smembers(redisKeys.nodes());
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
        features: (h.features ?? '').split(',').filter(Boolean), address: h.address ?? '',
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

  private checkHeartbeats(): void {
    const now = Date.now();
    for (const session of this.sessions.values()) {
      const missed = Math.floor((now - session.lastSeenMs) / this.heartbeatIntervalMs);
      if (missed >= DEAD_AFTER_MISSED) {
        session.state = 'dead';
        session.close(new ConclaveError('ORCH-HEALTH-901', { detail: `dead after ${missed} missed heartbeats`, data: { node: session.id } }));
      } else if (missed >= SUSPECT_AFTER_MISSED && session.state === 'connected') {
        session.state = 'suspect';
        session.logger.warn('HEALTH', 'node suspect: heartbeats missing', { missed, code: 'ORCH-HEALTH-901' });
        this.emit('changed');
      }
    }
  }

  private async persist(session: NodeSession, state: string): Promise<void> {
    try {
      await this.redis.hset(redisKeys.node(session.id), {
        id: session.id, name: session.name, state, slots: String(session.slots),
        backends: session.backends.join(','), features: session.features.join(','),
        cpuCores: String(session.cpuCores), memoryBytes: String(session.memoryBytes),
        lastSeenMs: String(session.lastSeenMs), address: session.address,
      });
    } catch (err) {
      this.logger.warn('STATE', 'could not record node state', { node: session.id, err });
    }
  }
}

function toNodeInfo(s: NodeSession): NodeInfo {
  return {
    id: s.id, name: s.name, state: s.state, slots: s.slots, running: s.running, backends: s.backends,
    backendActive: s.backendActive, loadedModels: [...s.loadedModels], models: [...s.storedModels],
    lastSeenMs: s.lastSeenMs, connectedAtMs: s.connectedAtMs, cpuCores: s.cpuCores, memoryBytes: s.memoryBytes,
    features: s.features, address: s.address,
  };
}
