import { hashToken } from './join-string.js';

/** Registry states (DESIGN.md); `unknown` means the node id is not in the registry. */
export type NodeStatus = 'accepted' | 'pending' | 'denied' | 'revoked' | 'unknown';

export interface NodeRecord {
  status: NodeStatus;
  /** The key the node enrolled with; compared with the key that signed the handshake. */
  publicKey?: Uint8Array;
}

export interface EnrollRequest {
  nodeId: string;
  publicKey: Uint8Array;
  /** `hashToken(token)`: the store never sees the token itself. */
  tokenHash: string;
  nowMs: number;
}

export type EnrollOutcome =
  | { ok: true; status: 'accepted' | 'pending' }
  | { ok: false; reason: 'invalid' | 'used' | 'expired' };

/**
 * What the responder asks the orchestrator's registry. The real implementation lives on Redis
 * (the lead's store); `enroll` must consume the token and register the node in one atomic step,
 * so a token can never enroll two nodes.
 */
export interface EnrollmentHooks {
  lookupNode(nodeId: string, publicKey: Uint8Array): NodeRecord | Promise<NodeRecord>;
  enroll(request: EnrollRequest): EnrollOutcome | Promise<EnrollOutcome>;
}

export interface MemoryEnrollmentOptions {
  /** @default 'auto' */
  approval?: 'auto' | 'manual';
  now?: () => number;
}

/** An in-memory registry with the same semantics as the Redis one; for tests and local runs. */
export class MemoryEnrollment implements EnrollmentHooks {
  readonly nodes = new Map<string, { status: Exclude<NodeStatus, 'unknown'>; publicKey: Uint8Array }>();
  readonly #tokens = new Map<string, { expiresAtMs: number; used: boolean }>();
  readonly #approval: 'auto' | 'manual';
  readonly #now: () => number;

  constructor(options: MemoryEnrollmentOptions = {}) {
    this.#approval = options.approval ?? 'auto';
    this.#now = options.now ?? Date.now;
  }

  /** Stores only the hash of a token valid for `ttlMs`. */
  addToken(token: Uint8Array, ttlMs: number): void {
    this.#tokens.set(hashToken(token), { expiresAtMs: this.#now() + ttlMs, used: false });
  }

  setStatus(nodeId: string, status: Exclude<NodeStatus, 'unknown'>, publicKey?: Uint8Array): void {
    const existing = this.nodes.get(nodeId);
    const key = publicKey ?? existing?.publicKey;
    if (!key) throw new Error(`no key for node ${nodeId}`);
    this.nodes.set(nodeId, { status, publicKey: key });
  }

  lookupNode(nodeId: string): NodeRecord {
    const node = this.nodes.get(nodeId);
    return node ? { status: node.status, publicKey: node.publicKey } : { status: 'unknown' };
  }

  enroll(request: EnrollRequest): EnrollOutcome {
    const token = this.#tokens.get(request.tokenHash);
    if (!token) return { ok: false, reason: 'invalid' };
    if (token.used) return { ok: false, reason: 'used' };
    if (request.nowMs >= token.expiresAtMs) return { ok: false, reason: 'expired' };
    token.used = true;
    const status = this.#approval === 'auto' ? 'accepted' : 'pending';
    this.nodes.set(request.nodeId, { status, publicKey: request.publicKey });
    return { ok: true, status };
  }
}
