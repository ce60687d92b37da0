// What the gateway lets strangers and enrolled nodes hold: revocation against every stream of a
// node, handshake-sized reads before authentication, per-source handshake caps, per-node fetch
// caps. A real orchestrator on real gRPC; the nodes are driven by hand with the protocol's own
// initiator, so a test can do what a well-behaved agent never does.
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError, captureLogger } from '@conclave/common';
import type { RedisServerHandle } from '@conclave/common';
import {
  PinSet, SecureSession, createGatewayClient, createInitiator, decodeJoinString, decodeOrchestratorMessage, encodeNodeMessage,
  generateIdentity, grpcFrameStream, nodeIdFromPublicKey,
} from '@conclave/protocol';
import type { Identity, ModelChunk__Output, NodeMessage, OrchestratorMessage__Output } from '@conclave/protocol';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import { createTestControl } from '../control.js';
import type { TestControl } from '../control.js';
import { startTestOrchestrator } from '../fleet.js';
import { affineModel } from '../onnx/affine-model.js';
import { heavyModel } from '../onnx/heavy-model.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { Cleanup, within } from './e2e-support.js';

type NodeSecureSession = SecureSession<NodeMessage, OrchestratorMessage__Output>;

interface HandDrivenSession {
  session: NodeSecureSession;
  /** The gRPC call under it: pausing it makes the node stop reading its stream. */
  call: grpc.ClientDuplexStream<unknown, unknown>;
  /** Resolves once the handshake is done (the Register is the caller's to send, or not). */
  established: Promise<void>;
  closed: Promise<ConclaveError>;
  messages: OrchestratorMessage__Output[];
}

const register = (nodeId: string): NodeMessage => ({
  register: { nodeId, name: 'hand-driven', slots: 1, capabilities: { cpuCores: 1, backends: ['cpu'], backendActive: 'cpu', agentVersion: '0.1.0' } },
});

describe('gateway limits', () => {
  const cleanup = new Cleanup();
  const perTest = new Cleanup();
  let redis: RedisServerHandle;
  let orchestrator: OrchestratorHandle;
  let control: TestControl;
  let modelSha = '';
  const orchLog = captureLogger('ORCH');
  const STALL_MS = 500;

  beforeAll(async () => {
    redis = await startRedis();
    cleanup.add(() => redis.stop());
    orchestrator = await startTestOrchestrator({
      redisUrl: redis.url, heartbeatIntervalMs: 250, logger: orchLog.logger, modelTransferStallMs: STALL_MS,
    });
    cleanup.add(() => orchestrator.close());
    control = createTestControl(orchestrator);
    cleanup.add(() => control.close());
    modelSha = (await control.addModel('affine', affineModel({ seed: 3 }).bytes)).sha256;
  });
  afterEach(() => perTest.run());
  afterAll(() => cleanup.run());

  /** One NodeGateway.Session of `identity`, handshake done by the protocol's initiator. */
  function open(identity: Identity, token?: Uint8Array): HandDrivenSession {
    const client = createGatewayClient(orchestrator.address);
    perTest.add(() => client.close());
    const messages: OrchestratorMessage__Output[] = [];
    let established!: () => void;
    const done = new Promise<void>((resolve) => (established = resolve));
    let session!: NodeSecureSession;
    const call = client.Session();
    const closed = new Promise<ConclaveError>((resolve) => {
      session = new SecureSession({
        stream: grpcFrameStream(call),
        side: { role: 'initiator', handshake: createInitiator({ identity, pins: new PinSet([orchestrator.fingerprint]), ...(token ? { token } : {}) }) },
        encode: encodeNodeMessage,
        decode: decodeOrchestratorMessage,
        codes: { failed: 'NODE-NET-601', ended: 'NODE-NET-602', protocol: 'NODE-NET-605' },
        peerName: 'orchestrator',
        logger: captureLogger('NODE').logger,
        onEstablished: () => established(),
        onMessage: (m) => void messages.push(m),
        onClosed: resolve,
      });
    });
    perTest.add(() => session.close(new ConclaveError('NODE-NET-602', { detail: 'test over' })));
    return { session, call: call as unknown as grpc.ClientDuplexStream<unknown, unknown>, established: done, closed, messages };
  }

  /** A node enrolled with a fresh join token and registered on its first session. */
  async function enrolledNode(): Promise<{ identity: Identity; nodeId: string; first: HandDrivenSession }> {
    const identity = generateIdentity();
    const nodeId = nodeIdFromPublicKey(identity.publicKey);
    const { token } = decodeJoinString(await orchestrator.createJoinString());
    const first = open(identity, token);
    await within(first.established, 5_000, 'first handshake');
    first.session.send(register(nodeId));
    await waitUntil(() => first.messages.some((m) => m.registered), { what: 'registered', timeoutMs: 5_000, intervalMs: 10 });
    return { identity, nodeId, first };
  }

  it('a revocation closes a spare session that holds back its Register, within 1 s, and its Register never gets in', async () => {
    const { identity, nodeId, first } = await enrolledNode();
    // The attacker's trick: a second handshake, finished, its Register kept for after the revocation.
    const spare = open(identity);
    await within(spare.established, 5_000, 'spare handshake');

    const revokedAt = Date.now();
    await control.revokeNode(nodeId);
    const [firstClosed, spareClosed] = await within(Promise.all([first.closed, spare.closed]), 1_000, 'both sessions closed');
    expect(Date.now() - revokedAt).toBeLessThan(1_000);
    for (const closed of [firstClosed, spareClosed]) expect(closed.data).toMatchObject({ remoteFailure: 'revoked' });

    spare.session.send(register(nodeId));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(spare.messages.some((m) => m.registered)).toBe(false);
    const listed = (await control.listNodes()).find((n) => n.id === nodeId);
    expect(listed).toMatchObject({ status: 'revoked' });
    expect(listed?.state).not.toBe('connected');
  });

  it('reads no more than a handshake-sized message before the peer authenticates: a 1 MiB HELLO fails the call at its length prefix', async () => {
    const client = new (grpc.makeGenericClientConstructor({}, ''))(orchestrator.address, grpc.credentials.createInsecure());
    perTest.add(() => client.close());
    const call = client.makeBidiStreamRequest(
      '/conclave.v1.NodeGateway/Session', (b: Buffer) => b, (b: Buffer) => b,
    );
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => undefined);
    call.on('data', () => undefined);
    // NodeFrame{handshake = 1: bytes}: tag 0x0a, a varint length, 1 MiB of bytes.
    const body = Buffer.alloc(1024 * 1024, 7);
    call.write(Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x40]), body]));
    const ended = await within(status, 5_000, 'call status');
    expect(ended.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(ended.details).toMatch(/larger than max/);
  });

  it('holds at most 8 handshakes open per source: the 9th stream is refused before anything is read (ORCH-AUTH-570)', async () => {
    const client = createGatewayClient(orchestrator.address);
    perTest.add(() => client.close());
    const calls = Array.from({ length: 9 }, () => {
      const call = client.Session();
      const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      call.on('error', () => undefined);
      call.on('data', () => undefined);
      perTest.add(() => call.cancel());
      return { call, status };
    });
    const refused = await within(Promise.race(calls.map((c) => c.status)), 4_000, 'a refusal');
    expect(refused.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(refused.details).toMatch(/^ORCH-AUTH-570 /);
    // One refused, the eight others still open (until their handshake deadline).
    const settled = await Promise.all(calls.map((c) => Promise.race([c.status.then(() => 1), new Promise((r) => setTimeout(() => r(0), 200))])));
    expect(settled.reduce((a: number, b) => a + (b as number), 0)).toBe(1);
  });

  it('lets one node have at most 4 model transfers in flight; more are refused with ORCH-LOAD-104, and the rest complete', async () => {
    const { first } = await enrolledNode();
    for (let i = 0; i < 12; i++) first.session.send({ fetchModel: { sha256: modelSha, offset: 0 } });
    const chunks = () => first.messages.flatMap((m) => (m.modelChunk ? [m.modelChunk] : []));
    const ends = () => chunks().filter((c: ModelChunk__Output) => c.last);
    await waitUntil(() => ends().length === 12, { what: '12 transfers ended', timeoutMs: 5_000, intervalMs: 10 });
    const refused = ends().filter((c) => c.error?.code === 'ORCH-LOAD-104');
    expect(refused.length).toBeGreaterThan(0);
    expect(ends().filter((c) => !c.error).length).toBeGreaterThanOrEqual(4);
    expect(refused[0]?.error?.retryable).toBe(true);
  });

  it('abandons a model transfer whose node stops reading, closing its file (ORCH-LOAD-105), and the node stays connected', async () => {
    // 16 MiB: more than the stream's buffers and flow-control windows hold.
    const big = (await control.addModel('big', heavyModel({ size: 2048, layers: 2 }).bytes)).sha256;
    const { first, nodeId } = await enrolledNode();
    // The node keeps sending heartbeats (it is alive), but reads nothing more.
    const heartbeats = setInterval(() => first.session.send({
      heartbeat: { slots: 1, loadedModels: [], memoryUsedBytes: 0, backendActive: 'cpu', sentAtMs: Date.now(), runningJobs: [] },
    }), 100);
    perTest.add(() => clearInterval(heartbeats));
    const mark = orchLog.lines.length;
    first.session.send({ fetchModel: { sha256: big, offset: 0 } });
    first.call.pause();
    await waitUntil(() => orchLog.lines.slice(mark).some((l) => l.includes('ORCH-LOAD-105')), { what: 'the transfer abandoned', timeoutMs: 10_000, intervalMs: 20 });
    expect((await control.listNodes()).find((n) => n.id === nodeId)?.state).toBe('connected');
  });
});
