// The admin RPCs and the operator token over real gRPC (port 0) and a real Redis: the server
// guards the Control service with operatorAuthInterceptor, the client sends the token through
// createControlClient's interceptor, and the CLI's ControlCalls map the answers.
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger } from '@conclave/common';
import {
  createControlClient,
  decodeJoinString,
  fingerprint,
  generateIdentity,
  hashToken,
  loadConclaveProtos,
  nodeIdFromPublicKey,
  type ControlHandlers,
} from '@conclave/protocol';
import { startRedis, type RedisServerHandle } from '@conclave/testing';
import { createAdminService } from './admin-service.js';
import { ControlCallError, controlCallsFromClient, type ControlCalls } from './cli/control-calls.js';
import { RedisEnrollmentStore } from './enrollment-store.js';
import { operatorAuthInterceptor } from './operator-auth.js';

const OPERATOR_TOKEN = 'test-operator-token-0123456789abcdef';
const ORCHESTRATOR_FINGERPRINT = fingerprint(generateIdentity().publicKey);

describe('admin service behind the operator token', () => {
  let redisServer: RedisServerHandle;
  let redis: Redis;
  let server: grpc.Server;
  let address: string;
  let store: RedisEnrollmentStore;
  const closed: Array<[string, string]> = [];
  const { logger, lines } = captureLogger('ORCH');
  const clients: ControlCalls[] = [];

  const connect = (operatorToken?: string): ControlCalls => {
    const calls = controlCallsFromClient(createControlClient(address, operatorToken !== undefined ? { operatorToken } : {}), { address });
    clients.push(calls);
    return calls;
  };

  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    store = new RedisEnrollmentStore(redis, { approval: 'manual' });
    const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
      callback({ code: grpc.status.UNIMPLEMENTED, details: 'not in this test' });
    const handlers = {
      SubmitJob: unimplemented,
      GetJob: unimplemented,
      CancelJob: unimplemented,
      ListModels: unimplemented,
      AddModel: unimplemented,
      ListNodes: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { nodes: [] }),
      WatchJob: (call: grpc.ServerWritableStream<unknown, unknown>) => call.end(),
      ...createAdminService({
        store,
        advertiseAddress: 'orchestrator.local:7400',
        orchestratorFingerprint: ORCHESTRATOR_FINGERPRINT,
        defaultTokenTtlMs: 3_600_000,
        closeNodeSessions: (nodeId, reason) => closed.push([nodeId, reason]),
        describeNode: (nodeId) => ({ id: nodeId, name: 'pi-07', state: 'connected' }),
        logger,
      }),
    } as unknown as ControlHandlers;
    server = new grpc.Server({ interceptors: [operatorAuthInterceptor(OPERATOR_TOKEN, logger)] });
    server.addService(loadConclaveProtos().conclave.v1.Control.service, handlers);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    address = `127.0.0.1:${port}`;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    server?.forceShutdown();
    await redis?.quit();
    await redisServer?.stop();
  });

  it('refuses calls without the token, or with a wrong one, with one message', async () => {
    const missing = await connect().listJoinTokens().catch((e: unknown) => e);
    const wrong = await connect('not-the-operator-token').createJoinToken().catch((e: unknown) => e);
    const watch = await connect().watchJob('j-1').catch((e: unknown) => e);
    for (const err of [missing, wrong, watch]) {
      expect(err).toBeInstanceOf(ControlCallError);
      expect(err).toMatchObject({ status: 'UNAUTHENTICATED', code: 'ORCH-AUTH-553' });
    }
    expect((missing as Error).message).toBe((wrong as Error).message);
    expect(await store.listTokens()).toEqual([]);
    expect(lines.join('\n')).toContain('reason=mismatch');
  });

  it('CreateJoinToken returns a join string with the address, a 32-byte token and the fingerprint', async () => {
    const calls = connect(OPERATOR_TOKEN);
    const before = Date.now();
    const created = await calls.createJoinToken(600);
    const info = decodeJoinString(created.join);
    expect(info.address).toBe('orchestrator.local:7400');
    expect(info.fingerprint).toBe(ORCHESTRATOR_FINGERPRINT);
    expect(created.id).toBe(hashToken(info.token).slice(0, 12));
    expect(Number(created.expiresAtMs) - Number(created.createdAtMs)).toBe(600_000);
    expect(Number(created.createdAtMs)).toBeGreaterThanOrEqual(before);
    const byDefault = await calls.createJoinToken();
    expect(Number(byDefault.expiresAtMs) - Number(byDefault.createdAtMs)).toBe(3_600_000);
    // Listed without the join string; never logged.
    const listed = await calls.listJoinTokens();
    expect(listed.map((t) => t.id)).toEqual(expect.arrayContaining([created.id, byDefault.id]));
    expect(listed.every((t) => t.join === '')).toBe(true);
    expect(lines.join('\n')).not.toContain(created.join.split(':')[4] ?? 'x');
    expect(lines.some((l) => l.includes('join token created') && l.includes(`joinId=${created.id}`))).toBe(true);
  });

  it('RevokeJoinToken: the token no longer enrolls; an unknown id is NOT_FOUND', async () => {
    const calls = connect(OPERATOR_TOKEN);
    const created = await calls.createJoinToken();
    const revoked = await calls.revokeJoinToken(created.id);
    expect(revoked).toMatchObject({ id: created.id, revoked: true, used: false });
    const { publicKey } = generateIdentity();
    const outcome = await store.enroll({
      nodeId: nodeIdFromPublicKey(publicKey),
      publicKey,
      tokenHash: hashToken(decodeJoinString(created.join).token),
      nowMs: Date.now(),
    });
    expect(outcome).toEqual({ ok: false, reason: 'invalid' });
    await expect(calls.revokeJoinToken('ffffffffffff')).rejects.toMatchObject({ status: 'NOT_FOUND', code: 'ORCH-AUTH-551' });
  });

  it('ApproveNode moves pending to accepted; RevokeNode revokes and closes the sessions', async () => {
    const calls = connect(OPERATOR_TOKEN);
    const created = await calls.createJoinToken();
    const { publicKey } = generateIdentity();
    const nodeId = nodeIdFromPublicKey(publicKey);
    const tokenHash = hashToken(decodeJoinString(created.join).token);
    expect(await store.enroll({ nodeId, publicKey, tokenHash, nowMs: Date.now() })).toEqual({ ok: true, status: 'pending' });

    const approved = await calls.approveNode(nodeId);
    expect(approved).toMatchObject({ id: nodeId, status: 'accepted', fingerprint: fingerprint(publicKey), name: 'pi-07' });
    expect((await store.lookupNode(nodeId, publicKey)).status).toBe('accepted');

    const revoked = await calls.revokeNode(nodeId);
    expect(revoked).toMatchObject({ id: nodeId, status: 'revoked' });
    expect(closed).toEqual([[nodeId, 'revoked by operator']]);
    await expect(calls.approveNode(nodeId)).rejects.toMatchObject({ status: 'FAILED_PRECONDITION', code: 'ORCH-AUTH-552' });
    await expect(calls.revokeNode('0'.repeat(32))).rejects.toMatchObject({ status: 'NOT_FOUND', code: 'ORCH-AUTH-550' });
    expect(lines.some((l) => l.includes('node revoked') && l.includes(nodeId))).toBe(true);
  });
});
