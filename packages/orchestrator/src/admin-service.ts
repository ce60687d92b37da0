import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { encodeJoinString, isValidAddress, parseFingerprint } from '@conclave/protocol';
import type { ControlHandlers, JoinToken, NodeInfo, NodeRequest__Output } from '@conclave/protocol';
import type { EnrolledNode, JoinTokenRecord, RedisEnrollmentStore } from './enrollment-store.js';
import { unary } from './grpc-errors.js';
import { UNGUARDED } from './state-store-guard.js';
import type { StateStoreGuard } from './state-store-guard.js';

/** The Control RPCs this module serves; the rest are control-service.ts's. */
export type AdminHandlers = Pick<ControlHandlers, 'CreateJoinToken' | 'ListJoinTokens' | 'RevokeJoinToken' | 'ApproveNode' | 'RevokeNode'>;

/**
 * The longest a join token may live: 30 days. A join token lets a machine in; one that
 * outlives the reason it was made (2^32 s reached the year 2163) is a standing invitation.
 */
export const MAX_TOKEN_TTL_SECONDS = 30 * 24 * 60 * 60;

/** A join token lives 1 hour unless the request or `--token-ttl` says otherwise. */
export const DEFAULT_JOIN_TOKEN_TTL_MS = 60 * 60 * 1000;

export interface AdminServiceOptions {
  store: RedisEnrollmentStore;
  /**
   * `host:port` that join strings carry: where boards dial. Read at each CreateJoinToken, so it
   * may be a getter that is filled in once the port is bound.
   */
  advertiseAddress: string;
  /** `SHA256:…` of the orchestrator key, pinned by nodes from the join string. */
  orchestratorFingerprint: string;
  /**
   * `SHA256:…` (base64url) of the gateway's TLS certificate, DER, when it serves TLS: join strings
   * carry it, and a node that joins with one connects with TLS and pins that certificate.
   * May be a getter. Absent: join strings without it (plaintext gateway).
   */
  tlsFingerprint?: string | undefined;
  /** TTL of a token requested with `ttl_seconds` 0. */
  defaultTokenTtlMs: number;
  /** Ends the node's live sessions (the registry does it within a second). */
  closeNodeSessions: (nodeId: string, reason: string) => void;
  /** Live details of a node (name, state, slots…) to fill the NodeInfo answers; absent: enrollment fields only. */
  describeNode?: (nodeId: string) => NodeInfo | undefined | Promise<NodeInfo | undefined>;
  logger: Logger;
  /** Fails calls at once while Redis is away (ORCH-STATE-710). @default none */
  stateStore?: StateStoreGuard;
}

/**
 * Join tokens and node approval over the Control API. Each action is logged under AUTH
 * with ids only: a join string (it holds the token) is returned once and never logged. The
 * token id is logged as `joinId`: the logger redacts any key that says "token".
 */
export function createAdminService(o: AdminServiceOptions): AdminHandlers {
  const { store, logger } = o;
  if (!parseFingerprint(o.orchestratorFingerprint)) {
    throw new ConclaveError('ORCH-STATE-703', { detail: 'orchestratorFingerprint must be SHA256:<base64url>' });
  }
  if (!Number.isSafeInteger(o.defaultTokenTtlMs) || o.defaultTokenTtlMs <= 0) {
    throw new ConclaveError('ORCH-STATE-703', { detail: `defaultTokenTtlMs must be a positive integer, got ${o.defaultTokenTtlMs}` });
  }
  const guard = o.stateStore ?? UNGUARDED;
  /** Every admin call reads or writes the enrollment records in Redis. */
  const stateful = <Req, Res>(handler: (request: Req) => Promise<Res>) => unary(logger, (request: Req) => guard(() => handler(request)));

  const nodeInfo = async (node: EnrolledNode): Promise<NodeInfo> => ({
    ...(await o.describeNode?.(node.nodeId)),
    id: node.nodeId,
    status: node.status,
    fingerprint: node.fingerprint,
  });

  return {
    CreateJoinToken: stateful(async (request) => {
      const address = o.advertiseAddress;
      if (!isValidAddress(address)) {
        throw new ConclaveError('ORCH-STATE-703', { detail: `advertise address must be HOST:PORT, got ${JSON.stringify(address)}` });
      }
      if (request.ttlSeconds > MAX_TOKEN_TTL_SECONDS) {
        throw new ConclaveError('ORCH-REQ-207', {
          detail: `ttl_seconds ${request.ttlSeconds} is outside 0 (the default) to ${MAX_TOKEN_TTL_SECONDS}`, data: { field: 'ttl_seconds' },
        });
      }
      const ttlMs = request.ttlSeconds > 0 ? request.ttlSeconds * 1000 : o.defaultTokenTtlMs;
      const created = await store.createToken(ttlMs);
      const tlsFingerprint = o.tlsFingerprint;
      const join = encodeJoinString({
        address, token: created.token, fingerprint: o.orchestratorFingerprint, ...(tlsFingerprint ? { tlsFingerprint } : {}),
      });
      logger.info('AUTH', 'join token created', { joinId: created.id, expiresAtMs: created.expiresAtMs, address });
      return {
        id: created.id,
        join,
        createdAtMs: created.createdAtMs,
        expiresAtMs: created.expiresAtMs,
        used: false,
        revoked: false,
        usedBy: '',
      };
    }),

    ListJoinTokens: stateful(async () => ({ tokens: (await store.listTokens()).map(toJoinToken) })),

    RevokeJoinToken: stateful(async (request) => {
      const record = await store.revokeToken(request.id);
      logger.info('AUTH', 'join token revoked', { joinId: record.id });
      return toJoinToken(record);
    }),

    ApproveNode: stateful(async (request: NodeRequest__Output) => {
      const node = await store.approve(request.id);
      logger.info('AUTH', 'node approved', { nodeId: node.nodeId, fingerprint: node.fingerprint });
      return nodeInfo(node);
    }),

    RevokeNode: stateful(async (request: NodeRequest__Output) => {
      const node = await store.revoke(request.id);
      logger.warn('AUTH', 'node revoked', { nodeId: node.nodeId, fingerprint: node.fingerprint });
      // After the store says revoked: a session that reconnects in between is refused by lookup.
      o.closeNodeSessions(node.nodeId, 'revoked by operator');
      return nodeInfo(node);
    }),
  };
}

export function toJoinToken(record: JoinTokenRecord): JoinToken {
  return {
    id: record.id,
    join: '',
    createdAtMs: record.createdAtMs,
    expiresAtMs: record.expiresAtMs,
    used: record.used,
    revoked: record.revoked,
    usedBy: record.usedBy ?? '',
  };
}
