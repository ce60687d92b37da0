import type { Redis } from 'ioredis';
import { ConclaveError } from '@conclave/common';
import {
  fingerprint,
  generateJoinToken,
  hashToken,
  nodeIdFromPublicKey,
  type EnrollOutcome,
  type EnrollRequest,
  type EnrollmentHooks,
  type NodeRecord,
  type NodeStatus,
} from '@conclave/protocol';
import { redisKeys } from './redis-keys.js';

/** A registry state other than `unknown`: what a stored record can hold. */
export type EnrolledStatus = Exclude<NodeStatus, 'unknown'>;

/** How a new node starts: `accepted` at once, or `pending` until `orchestrator nodes approve`. */
export type ApprovalMode = 'auto' | 'manual';

export interface RedisEnrollmentStoreOptions {
  approval: ApprovalMode;
  /** Clock for token creation and state changes; `enroll` uses the request's `nowMs`. @default Date.now */
  now?: () => number;
}

/** What `createToken` returns: the only time the token itself exists outside the join string. */
export interface CreatedJoinToken {
  /** 32 random bytes; only `hashToken(token)` is stored. */
  token: Uint8Array;
  /** First 12 hex characters of the token's hash; names the token in list and revoke. */
  id: string;
  createdAtMs: number;
  expiresAtMs: number;
}

/** A join token as listed: never the token, never its hash. */
export interface JoinTokenRecord {
  id: string;
  createdAtMs: number;
  expiresAtMs: number;
  used: boolean;
  /** Node id that used the token. */
  usedBy?: string;
  usedAtMs?: number;
  revoked: boolean;
  revokedAtMs?: number;
}

/** A node's enrollment record. */
export interface EnrolledNode {
  nodeId: string;
  status: EnrolledStatus;
  /** The Ed25519 key the node enrolled with. */
  publicKey: Uint8Array;
  /** `SHA256:…` of the key. */
  fingerprint: string;
  enrolledAtMs: number;
  /** Last status change. */
  updatedAtMs: number;
  /** The join token it enrolled with. */
  tokenId?: string;
}

/** Used and expired tokens stay listable this long after their expiry, then Redis drops them. */
export const TOKEN_RETENTION_MS = 24 * 60 * 60 * 1000;

/** Characters of the hex token hash that name a token (48 bits: ids of live tokens never collide in practice). */
export const TOKEN_ID_LENGTH = 12;

/**
 * Creates a join token unless its id is taken.
 *   KEYS[1]  the token hash          KEYS[2]  the token index (sorted set)
 *   ARGV[1]  token id   ARGV[2]  token hash (hex)   ARGV[3]  createdAtMs   ARGV[4]  expiresAtMs
 *   ARGV[5]  key TTL in ms (token lifetime + retention)
 * Returns: 1 when created, 0 when the id already exists (the caller draws a new token).
 */
const CREATE_TOKEN_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'hash', ARGV[2], 'createdAtMs', ARGV[3], 'expiresAtMs', ARGV[4],
  'used', '0', 'revoked', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
`;

/**
 * Consumes a join token and registers the node, in one step: a token never enrolls two nodes,
 * and a node is never registered without a token that was valid at `nowMs`.
 *   KEYS[1]  the token hash (by id = the first 12 hex characters of the hash)
 *   KEYS[2]  the node's enrollment hash          KEYS[3]  the set of enrolled node ids
 *   ARGV[1]  the full token hash (hex)   ARGV[2]  nowMs   ARGV[3]  node id
 *   ARGV[4]  public key (hex)            ARGV[5]  status to register: accepted | pending
 * Returns: {'ok', status} when enrolled; {'err', reason} with reason invalid (no such token, another
 * hash under the same id, or revoked), used, or expired, checked in that order as MemoryEnrollment
 * does. Unlike MemoryEnrollment it never overwrites a record: a node id that is already denied or
 * revoked (a revoke that raced the handshake), or enrolled with another key, is `invalid` and the
 * token stays unused; a node already accepted or pending with this key keeps its status and the
 * token is consumed. The hash comparison need not be constant-time: it compares SHA-256 hashes
 * of 256-bit secrets, so timing reveals nothing usable.
 */
const ENROLL_SCRIPT = `
local token = redis.call('HMGET', KEYS[1], 'hash', 'used', 'revoked', 'expiresAtMs', 'id')
if not token[1] or token[1] ~= ARGV[1] then return {'err', 'invalid'} end
if token[2] == '1' then return {'err', 'used'} end
if token[3] == '1' then return {'err', 'invalid'} end
if tonumber(ARGV[2]) >= tonumber(token[4]) then return {'err', 'expired'} end
local existing = redis.call('HMGET', KEYS[2], 'status', 'publicKey')
local status = ARGV[5]
if existing[1] then
  if existing[2] ~= ARGV[4] or (existing[1] ~= 'accepted' and existing[1] ~= 'pending') then
    return {'err', 'invalid'}
  end
  status = existing[1]
else
  redis.call('HSET', KEYS[2], 'nodeId', ARGV[3], 'status', status, 'publicKey', ARGV[4],
    'enrolledAtMs', ARGV[2], 'updatedAtMs', ARGV[2], 'tokenId', token[5])
  redis.call('SADD', KEYS[3], ARGV[3])
end
redis.call('HSET', KEYS[1], 'used', '1', 'usedBy', ARGV[3], 'usedAtMs', ARGV[2])
return {'ok', status}
`;

/**
 * Moves a node to a new status if its current status allows it.
 *   KEYS[1]  the node's enrollment hash
 *   ARGV[1]  new status   ARGV[2]  nowMs   ARGV[3…]  statuses it may move from (the new one
 *            included makes the change idempotent)
 * Returns: {} when the node is unknown; {1, previous status} when applied; {0, current status}
 * when the current status does not allow the change.
 */
const TRANSITION_SCRIPT = `
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {} end
for i = 3, #ARGV do
  if ARGV[i] == current then
    redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updatedAtMs', ARGV[2])
    return {1, current}
  end
end
return {0, current}
`;

/**
 * Marks a join token revoked; never recreates a token whose hash has expired.
 *   KEYS[1]  the token hash
 *   ARGV[1]  nowMs
 * Returns: 0 when the token is unknown, 1 when it is revoked (now or before).
 */
const REVOKE_TOKEN_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'revoked') ~= '1' then
  redis.call('HSET', KEYS[1], 'revoked', '1', 'revokedAtMs', ARGV[1])
end
return 1
`;

type RedisWithEnrollmentScripts = Redis & {
  conclaveCreateJoinToken(tokenKey: string, indexKey: string, ...argv: string[]): Promise<number>;
  conclaveEnroll(tokenKey: string, nodeKey: string, nodesKey: string, ...argv: string[]): Promise<[string, string]>;
  conclaveNodeTransition(nodeKey: string, ...argv: string[]): Promise<[] | [number, string]>;
  conclaveRevokeJoinToken(tokenKey: string, nowMs: string): Promise<number>;
};

const ENROLLED_STATUSES: ReadonlySet<string> = new Set<EnrolledStatus>(['accepted', 'pending', 'denied', 'revoked']);

/** Allowed source states of each operator action; the target is included so repeats are no-ops. */
const TRANSITIONS = {
  approve: { to: 'accepted', from: ['pending', 'denied', 'accepted'] },
  deny: { to: 'denied', from: ['pending', 'denied'] },
  revoke: { to: 'revoked', from: ['accepted', 'pending', 'denied', 'revoked'] },
} as const satisfies Record<string, { to: EnrolledStatus; from: readonly EnrolledStatus[] }>;

/**
 * The registry of enrolled nodes and join tokens, in Redis: what the handshake responder asks
 * (`EnrollmentHooks`) and what the admin RPCs change. Only `hashToken(token)` is ever stored.
 */
export class RedisEnrollmentStore implements EnrollmentHooks {
  readonly approval: ApprovalMode;
  readonly #redis: RedisWithEnrollmentScripts;
  readonly #now: () => number;

  constructor(redis: Redis, options: RedisEnrollmentStoreOptions) {
    this.approval = options.approval;
    this.#now = options.now ?? Date.now;
    const scripts: Array<[string, number, string]> = [
      ['conclaveCreateJoinToken', 2, CREATE_TOKEN_SCRIPT],
      ['conclaveEnroll', 3, ENROLL_SCRIPT],
      ['conclaveNodeTransition', 1, TRANSITION_SCRIPT],
      ['conclaveRevokeJoinToken', 1, REVOKE_TOKEN_SCRIPT],
    ];
    for (const [name, numberOfKeys, lua] of scripts) {
      if (!(name in redis)) redis.defineCommand(name, { numberOfKeys, lua });
    }
    this.#redis = redis as RedisWithEnrollmentScripts;
  }

  /** Makes a single-use token valid for `ttlMs`; the caller puts it in a join string and forgets it. */
  async createToken(ttlMs: number): Promise<CreatedJoinToken> {
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new RangeError(`token TTL must be a positive integer of ms, got ${ttlMs}`);
    for (;;) {
      const token = generateJoinToken();
      const hash = hashToken(token);
      const id = hash.slice(0, TOKEN_ID_LENGTH);
      const createdAtMs = this.#now();
      const expiresAtMs = createdAtMs + ttlMs;
      const created = await this.#redis.conclaveCreateJoinToken(
        redisKeys.joinToken(id),
        redisKeys.joinTokens(),
        id,
        hash,
        String(createdAtMs),
        String(expiresAtMs),
        String(ttlMs + TOKEN_RETENTION_MS),
      );
      if (created === 1) return { token, id, createdAtMs, expiresAtMs };
    }
  }

  /** Every token still remembered (live, and used or expired ones for 24 h after expiry), oldest first. */
  async listTokens(): Promise<JoinTokenRecord[]> {
    const ids = await this.#redis.zrange(redisKeys.joinTokens(), 0, -1);
    if (ids.length === 0) return [];
    const pipeline = this.#redis.pipeline();
    for (const id of ids) pipeline.hgetall(redisKeys.joinToken(id));
    const replies = (await pipeline.exec()) ?? [];
    const records: JoinTokenRecord[] = [];
    const gone: string[] = [];
    ids.forEach((id, i) => {
      const hash = replies[i]?.[1] as Record<string, string> | undefined;
      if (hash?.id) records.push(toTokenRecord(hash));
      else gone.push(id);
    });
    if (gone.length > 0) await this.#redis.zrem(redisKeys.joinTokens(), ...gone);
    return records;
  }

  /** The token's record; undefined once forgotten. */
  async getToken(id: string): Promise<JoinTokenRecord | undefined> {
    const hash = await this.#redis.hgetall(redisKeys.joinToken(id));
    return hash.id ? toTokenRecord(hash) : undefined;
  }

  /** Revokes an unused token so that it can no longer enroll a node; ORCH-AUTH-551 when unknown. */
  async revokeToken(id: string): Promise<JoinTokenRecord> {
    const known = isTokenId(id) && (await this.#redis.conclaveRevokeJoinToken(redisKeys.joinToken(id), String(this.#now()))) === 1;
    const record = known ? await this.getToken(id) : undefined;
    if (!record) throw new ConclaveError('ORCH-AUTH-551', { detail: JSON.stringify(id), data: { tokenId: id } });
    return record;
  }

  /** The responder's question; it compares `publicKey` with the stored key itself. */
  async lookupNode(nodeId: string, _publicKey?: Uint8Array): Promise<NodeRecord> {
    const node = await this.get(nodeId);
    return node ? { status: node.status, publicKey: node.publicKey } : { status: 'unknown' };
  }

  /** Consumes the token and registers the node in one Lua script (see ENROLL_SCRIPT). */
  async enroll(request: EnrollRequest): Promise<EnrollOutcome> {
    const { nodeId, publicKey, tokenHash, nowMs } = request;
    // The id is a function of the key; a caller that got this wrong must not register anything.
    if (publicKey.length !== 32 || nodeIdFromPublicKey(publicKey) !== nodeId) return { ok: false, reason: 'invalid' };
    if (!/^[0-9a-f]{64}$/.test(tokenHash)) return { ok: false, reason: 'invalid' };
    const status = this.approval === 'auto' ? 'accepted' : 'pending';
    const [kind, value] = await this.#redis.conclaveEnroll(
      redisKeys.joinToken(tokenHash.slice(0, TOKEN_ID_LENGTH)),
      redisKeys.enrolledNode(nodeId),
      redisKeys.enrolledNodes(),
      tokenHash,
      String(nowMs),
      nodeId,
      Buffer.from(publicKey).toString('hex'),
      status,
    );
    if (kind === 'ok' && (value === 'accepted' || value === 'pending')) return { ok: true, status: value };
    if (value === 'used' || value === 'expired') return { ok: false, reason: value };
    return { ok: false, reason: 'invalid' };
  }

  /** pending (or denied) → accepted; ORCH-AUTH-550 unknown, ORCH-AUTH-552 for a revoked node. */
  approve(nodeId: string): Promise<EnrolledNode> {
    return this.#transition(nodeId, 'approve');
  }

  /** pending → denied. */
  deny(nodeId: string): Promise<EnrolledNode> {
    return this.#transition(nodeId, 'deny');
  }

  /** Any status → revoked, for good. Ending its live sessions is the caller's part. */
  revoke(nodeId: string): Promise<EnrolledNode> {
    return this.#transition(nodeId, 'revoke');
  }

  async get(nodeId: string): Promise<EnrolledNode | undefined> {
    const hash = await this.#redis.hgetall(redisKeys.enrolledNode(nodeId));
    return toEnrolledNode(nodeId, hash);
  }

  /** Every enrolled node, in id order (for ListNodes). */
  async list(): Promise<EnrolledNode[]> {
    const ids = (await this.#redis.smembers(redisKeys.enrolledNodes())).sort();
    if (ids.length === 0) return [];
    const pipeline = this.#redis.pipeline();
    for (const id of ids) pipeline.hgetall(redisKeys.enrolledNode(id));
    const replies = (await pipeline.exec()) ?? [];
    return ids.flatMap((id, i) => {
      const node = toEnrolledNode(id, (replies[i]?.[1] as Record<string, string> | undefined) ?? {});
      return node ? [node] : [];
    });
  }

  async #transition(nodeId: string, action: keyof typeof TRANSITIONS): Promise<EnrolledNode> {
    const { to, from } = TRANSITIONS[action];
    const reply = await this.#redis.conclaveNodeTransition(redisKeys.enrolledNode(nodeId), to, String(this.#now()), ...from);
    if (reply.length === 0) throw new ConclaveError('ORCH-AUTH-550', { detail: JSON.stringify(nodeId), data: { nodeId } });
    const [applied, current] = reply;
    if (applied !== 1) {
      throw new ConclaveError('ORCH-AUTH-552', {
        detail: `cannot ${action} node ${nodeId}: it is ${current}`,
        data: { nodeId, status: current, action },
      });
    }
    const node = await this.get(nodeId);
    if (!node) throw new ConclaveError('ORCH-AUTH-550', { detail: JSON.stringify(nodeId), data: { nodeId } });
    return node;
  }
}

function isTokenId(id: string): boolean {
  return new RegExp(`^[0-9a-f]{${TOKEN_ID_LENGTH}}$`).test(id);
}

function toTokenRecord(hash: Record<string, string>): JoinTokenRecord {
  return {
    id: hash.id ?? '',
    createdAtMs: Number(hash.createdAtMs),
    expiresAtMs: Number(hash.expiresAtMs),
    used: hash.used === '1',
    ...(hash.usedBy ? { usedBy: hash.usedBy } : {}),
    ...(hash.usedAtMs ? { usedAtMs: Number(hash.usedAtMs) } : {}),
    revoked: hash.revoked === '1',
    ...(hash.revokedAtMs ? { revokedAtMs: Number(hash.revokedAtMs) } : {}),
  };
}

function toEnrolledNode(nodeId: string, hash: Record<string, string>): EnrolledNode | undefined {
  const { status, publicKey: keyHex } = hash;
  if (status === undefined || !ENROLLED_STATUSES.has(status) || keyHex === undefined) return undefined;
  const publicKey = new Uint8Array(Buffer.from(keyHex, 'hex'));
  return {
    nodeId,
    status: status as EnrolledStatus,
    publicKey,
    fingerprint: publicKey.length === 32 ? fingerprint(publicKey) : '',
    enrolledAtMs: Number(hash.enrolledAtMs),
    updatedAtMs: Number(hash.updatedAtMs),
    ...(hash.tokenId ? { tokenId: hash.tokenId } : {}),
  };
}
