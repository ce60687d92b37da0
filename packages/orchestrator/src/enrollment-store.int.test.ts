import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError } from '@conclave/common';
import { generateIdentity, hashToken, nodeIdFromPublicKey } from '@conclave/protocol';
import { startRedis, type RedisServerHandle } from '@conclave/testing';
import { RedisEnrollmentStore, TOKEN_RETENTION_MS } from './enrollment-store.js';

const HOUR_MS = 3_600_000;

function newNode(): { nodeId: string; publicKey: Uint8Array } {
  const { publicKey } = generateIdentity();
  return { nodeId: nodeIdFromPublicKey(publicKey), publicKey };
}

describe('RedisEnrollmentStore', () => {
  let server: RedisServerHandle;
  const clients: Redis[] = [];
  let testNumber = 0;

  beforeAll(async () => {
    server = await startRedis();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.quit()));
  });
  afterAll(async () => {
    await server.stop();
  });

  /** A store on its own key prefix, so tests never see each other's keys. */
  function makeStore(
    options: { approval?: 'auto' | 'manual'; now?: () => number; prefix?: string } = {},
  ): { store: RedisEnrollmentStore; redis: Redis; prefix: string } {
    testNumber += 1;
    const prefix = options.prefix ?? `t${testNumber}:`;
    const redis = new Redis(server.url, { keyPrefix: prefix });
    clients.push(redis);
    const store = new RedisEnrollmentStore(redis, { approval: options.approval ?? 'auto', ...(options.now ? { now: options.now } : {}) });
    return { store, redis, prefix };
  }

  it('enrolls a node with a fresh token and remembers its key', async () => {
    const { store } = makeStore();
    const { token, id, createdAtMs, expiresAtMs } = await store.createToken(HOUR_MS);
    expect(token).toHaveLength(32);
    expect(id).toBe(hashToken(token).slice(0, 12));
    expect(expiresAtMs - createdAtMs).toBe(HOUR_MS);
    const node = newNode();
    expect(await store.lookupNode(node.nodeId, node.publicKey)).toEqual({ status: 'unknown' });
    expect(await store.enroll({ ...node, tokenHash: hashToken(token), nowMs: Date.now() })).toEqual({ ok: true, status: 'accepted' });
    const record = await store.lookupNode(node.nodeId, node.publicKey);
    expect(record.status).toBe('accepted');
    expect(Buffer.from(record.publicKey ?? []).equals(Buffer.from(node.publicKey))).toBe(true);
    const stored = await store.get(node.nodeId);
    expect(stored).toMatchObject({ nodeId: node.nodeId, status: 'accepted', tokenId: id });
    expect(stored?.fingerprint).toMatch(/^SHA256:/);
    expect(await store.listTokens()).toEqual([expect.objectContaining({ id, used: true, usedBy: node.nodeId, revoked: false })]);
  });

  it('a token enrolls one node, even under two concurrent enroll calls', async () => {
    const { store, prefix } = makeStore();
    // A second connection, as a second orchestrator replica would have.
    const { store: other } = makeStore({ prefix });
    const { token } = await store.createToken(HOUR_MS);
    const a = newNode();
    const b = newNode();
    const tokenHash = hashToken(token);
    const outcomes = await Promise.all([
      store.enroll({ ...a, tokenHash, nowMs: Date.now() }),
      other.enroll({ ...b, tokenHash, nowMs: Date.now() }),
    ]);
    expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
    expect(outcomes.filter((o) => !o.ok)).toEqual([{ ok: false, reason: 'used' }]);
    const statuses = [(await store.lookupNode(a.nodeId, a.publicKey)).status, (await store.lookupNode(b.nodeId, b.publicKey)).status];
    expect(statuses.sort()).toEqual(['accepted', 'unknown']);
    expect(await store.list()).toHaveLength(1);
    // The same node again with the used token: still used.
    const winner = outcomes[0]?.ok ? a : b;
    expect(await store.enroll({ ...winner, tokenHash, nowMs: Date.now() })).toEqual({ ok: false, reason: 'used' });
  });

  it('refuses an expired token at the nowMs of the request', async () => {
    let now = 1_000_000;
    const { store } = makeStore({ now: () => now });
    const { token, expiresAtMs } = await store.createToken(60_000);
    now += 120_000;
    const tokenHash = hashToken(token);
    expect(await store.enroll({ ...newNode(), tokenHash, nowMs: expiresAtMs })).toEqual({ ok: false, reason: 'expired' });
    expect(await store.enroll({ ...newNode(), tokenHash, nowMs: expiresAtMs - 1 })).toEqual({ ok: true, status: 'accepted' });
  });

  it('refuses a revoked token as invalid, and an unknown one', async () => {
    const { store } = makeStore();
    const { token, id } = await store.createToken(HOUR_MS);
    const revoked = await store.revokeToken(id);
    expect(revoked).toMatchObject({ id, revoked: true, used: false });
    expect(await store.enroll({ ...newNode(), tokenHash: hashToken(token), nowMs: Date.now() })).toEqual({ ok: false, reason: 'invalid' });
    const stranger = new Uint8Array(32).fill(7);
    expect(await store.enroll({ ...newNode(), tokenHash: hashToken(stranger), nowMs: Date.now() })).toEqual({ ok: false, reason: 'invalid' });
    expect(await store.enroll({ ...newNode(), tokenHash: 'not-a-hash', nowMs: Date.now() })).toEqual({ ok: false, reason: 'invalid' });
    expect(await store.list()).toEqual([]);
  });

  it('refuses a node id that does not belong to the key', async () => {
    const { store } = makeStore();
    const { token } = await store.createToken(HOUR_MS);
    const a = newNode();
    const b = newNode();
    expect(await store.enroll({ nodeId: a.nodeId, publicKey: b.publicKey, tokenHash: hashToken(token), nowMs: Date.now() })).toEqual({
      ok: false,
      reason: 'invalid',
    });
    expect((await store.listTokens())[0]?.used).toBe(false);
  });

  it('stores only the hash: neither the token bytes nor their base64url appear in Redis', async () => {
    const { store, prefix } = makeStore();
    const tokens = await Promise.all([store.createToken(HOUR_MS), store.createToken(HOUR_MS)]);
    const first = tokens[0];
    if (!first) throw new Error('no token');
    await store.enroll({ ...newNode(), tokenHash: hashToken(first.token), nowMs: Date.now() });
    const raw = new Redis(server.url);
    clients.push(raw);
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await raw.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 100);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    expect(keys.length).toBeGreaterThan(0);
    const dump: Buffer[] = [];
    for (const key of keys) {
      dump.push(Buffer.from(key));
      const type = await raw.type(key);
      if (type === 'hash') {
        const hash = await raw.hgetallBuffer(key);
        for (const [field, value] of Object.entries(hash)) dump.push(Buffer.from(field), value);
      } else if (type === 'set') {
        dump.push(...(await raw.smembersBuffer(key)));
      } else if (type === 'zset') {
        dump.push(...(await raw.zrangeBuffer(key, 0, -1)));
      } else {
        throw new Error(`unexpected key type ${type} for ${key}`);
      }
    }
    const all = Buffer.concat(dump);
    for (const { token } of tokens) {
      const bytes = Buffer.from(token);
      expect(all.includes(bytes)).toBe(false);
      expect(all.includes(Buffer.from(bytes.toString('base64url')))).toBe(false);
      expect(all.includes(Buffer.from(bytes.toString('base64')))).toBe(false);
      expect(all.includes(Buffer.from(bytes.toString('hex')))).toBe(false);
      expect(all.includes(Buffer.from(hashToken(token)))).toBe(true);
    }
  });

  it('keeps a token listable until 24 h after its expiry', async () => {
    const { store, redis } = makeStore();
    const { id } = await store.createToken(HOUR_MS);
    const ttl = await redis.pttl(`conclave:{enroll}:token:${id}`);
    expect(ttl).toBeGreaterThan(HOUR_MS + TOKEN_RETENTION_MS - 60_000);
    expect(ttl).toBeLessThanOrEqual(HOUR_MS + TOKEN_RETENTION_MS);
    // A token whose hash Redis dropped disappears from the list and the index.
    await redis.del(`conclave:{enroll}:token:${id}`);
    expect(await store.listTokens()).toEqual([]);
    expect(await redis.zcard('conclave:{enroll}:tokens')).toBe(0);
  });

  it('manual approval: pending, then approve → accepted', async () => {
    const { store } = makeStore({ approval: 'manual' });
    const { token } = await store.createToken(HOUR_MS);
    const node = newNode();
    expect(await store.enroll({ ...node, tokenHash: hashToken(token), nowMs: Date.now() })).toEqual({ ok: true, status: 'pending' });
    expect((await store.lookupNode(node.nodeId, node.publicKey)).status).toBe('pending');
    expect(await store.approve(node.nodeId)).toMatchObject({ nodeId: node.nodeId, status: 'accepted' });
    expect((await store.lookupNode(node.nodeId, node.publicKey)).status).toBe('accepted');
    // Approving again is a no-op.
    expect((await store.approve(node.nodeId)).status).toBe('accepted');
  });

  it('deny and revoke; a revoked node cannot be approved or re-enrolled', async () => {
    const { store } = makeStore({ approval: 'manual' });
    const node = newNode();
    const first = await store.createToken(HOUR_MS);
    await store.enroll({ ...node, tokenHash: hashToken(first.token), nowMs: Date.now() });
    expect((await store.deny(node.nodeId)).status).toBe('denied');
    expect((await store.approve(node.nodeId)).status).toBe('accepted');
    expect((await store.revoke(node.nodeId)).status).toBe('revoked');
    expect((await store.lookupNode(node.nodeId, node.publicKey)).status).toBe('revoked');
    const err = await store.approve(node.nodeId).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConclaveError);
    expect((err as ConclaveError).code).toBe('ORCH-AUTH-552');
    await expect(store.deny(node.nodeId)).rejects.toMatchObject({ code: 'ORCH-AUTH-552' });
    // A fresh token does not bring a revoked node back, and stays unused.
    const second = await store.createToken(HOUR_MS);
    expect(await store.enroll({ ...node, tokenHash: hashToken(second.token), nowMs: Date.now() })).toEqual({ ok: false, reason: 'invalid' });
    expect((await store.getToken(second.id))?.used).toBe(false);
    expect((await store.revoke(node.nodeId)).status).toBe('revoked');
  });

  it('lookup with another key for a known id returns the stored record', async () => {
    const { store } = makeStore();
    const node = newNode();
    const { token } = await store.createToken(HOUR_MS);
    await store.enroll({ ...node, tokenHash: hashToken(token), nowMs: Date.now() });
    const other = generateIdentity().publicKey;
    const record = await store.lookupNode(node.nodeId, other);
    expect(record.status).toBe('accepted');
    expect(Buffer.from(record.publicKey ?? []).equals(Buffer.from(node.publicKey))).toBe(true);
  });

  it('unknown ids are ORCH-AUTH-550 (node) and ORCH-AUTH-551 (token)', async () => {
    const { store } = makeStore();
    await expect(store.approve('0'.repeat(32))).rejects.toMatchObject({ code: 'ORCH-AUTH-550' });
    await expect(store.revoke('nope')).rejects.toMatchObject({ code: 'ORCH-AUTH-550' });
    await expect(store.revokeToken('abcdefabcdef')).rejects.toMatchObject({ code: 'ORCH-AUTH-551' });
    await expect(store.revokeToken('../../x')).rejects.toMatchObject({ code: 'ORCH-AUTH-551' });
    expect(await store.get('0'.repeat(32))).toBeUndefined();
  });

  it('lists every enrolled node with its status', async () => {
    const { store } = makeStore();
    const nodes = [newNode(), newNode(), newNode()];
    for (const node of nodes) {
      const { token } = await store.createToken(HOUR_MS);
      await store.enroll({ ...node, tokenHash: hashToken(token), nowMs: Date.now() });
    }
    await store.revoke(nodes[1]?.nodeId ?? '');
    const listed = await store.list();
    expect(listed.map((n) => n.nodeId)).toEqual(nodes.map((n) => n.nodeId).sort());
    expect(listed.find((n) => n.nodeId === nodes[1]?.nodeId)?.status).toBe('revoked');
    expect(await store.listTokens()).toHaveLength(3);
  });
});
