// Secure sessions over the network: real gRPC, a real orchestrator and real node agents in this
// process (inference runs in worker threads from dist: `pnpm exec tsc -b packages/testing` first).
// Library-level attacks on the handshake and the sealed channel are in packages/protocol/src/secure.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger } from '@conclave/common';
import type { CapturedLogger, ConclaveError, RedisServerHandle } from '@conclave/common';
import {
  MemoryEnrollment, PinSet, SecureSession, createGatewayClient, createInitiator, createResponder, decodeJoinString,
  decodeOrchestratorMessage, encodeJoinString, encodeNodeMessage, fingerprint, generateIdentity, grpcFrameStream,
  loadConclaveProtos, nodeIdFromPublicKey,
} from '@conclave/protocol';
import type {
  NodeFrame__Output, NodeMessage, OrchestratorFrame, OrchestratorFrame__Output, OrchestratorMessage__Output,
} from '@conclave/protocol';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import { createTestControl } from '../control.js';
import type { TestControl } from '../control.js';
import { startTestNode, startTestOrchestrator, tempDir } from '../fleet.js';
import { affineModel } from '../onnx/affine-model.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { affineInput, Cleanup, mismatch, wireInputs, within } from './e2e-support.js';
import { FRAME_FIELD, RawGatewayConnection, encodeBytesField } from './raw-gateway-client.js';
import type { RawSessionResult } from './raw-gateway-client.js';

type TestNode = Awaited<ReturnType<typeof startTestNode>>;

const HANDSHAKE_TYPE = { hello: 1, response: 2, finish: 3, reject: 15 } as const;
/** REJECT reason bytes (docs/protocol.md §5). */
const REASON = { pinMismatch: 16, rateLimited: 8 } as const;

const model = affineModel({ seed: 23 });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** True when `promise` has settled by the next macrotask. */
async function hasSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => (settled = true), () => (settled = true));
  await sleep(0);
  return settled;
}

/** Header type byte of a handshake message. */
const typeOf = (bytes: Uint8Array) => bytes[5];

describe('secure sessions through real gRPC', () => {
  const cleanup = new Cleanup();
  const perTest = new Cleanup();
  let redis: RedisServerHandle;
  let orchestrator: OrchestratorHandle;
  let orchLog: CapturedLogger;
  let control: TestControl;

  beforeAll(async () => {
    redis = await startRedis();
    cleanup.add(() => redis.stop());
    orchLog = captureLogger('ORCH');
    orchestrator = await startTestOrchestrator({ redisUrl: redis.url, logger: orchLog.logger, heartbeatIntervalMs: 250 });
    cleanup.add(() => orchestrator.close());
    control = createTestControl(orchestrator);
    cleanup.add(() => control.close());
    await control.addModel('affine', model.bytes);
  });

  afterEach(() => perTest.run());
  afterAll(() => cleanup.run());

  /** A node agent (one slot, its own captured log), closed after the test. */
  async function startNode(options: Parameters<typeof startTestNode>[0]): Promise<TestNode & { log: CapturedLogger }> {
    const log = captureLogger('NODE');
    const node = await startTestNode({ slots: 1, logger: log.logger, ...options });
    perTest.add(() => node.close());
    return Object.assign(node, { log });
  }

  async function ownDir(): Promise<string> {
    const dir = await tempDir('conclave-secure-node-');
    perTest.add(() => dir.remove());
    return dir.path;
  }

  /** Orchestrator log lines written since `mark` (an earlier `orchLog.lines.length`). */
  const orchLinesSince = (mark: number, pattern: RegExp) => orchLog.lines.slice(mark).filter((l) => pattern.test(l));

  const nodeInfo = async (id: string) => (await control.listNodes()).find((n) => n.id === id);

  async function expectNoNodeConnected(): Promise<void> {
    await waitUntil(async () => (await control.listNodes()).every((n) => n.state !== 'connected'), { what: 'no node connected' });
  }

  /** Every `ms`, records whether the node says it is connected; stop() returns whether it ever was. */
  function watchConnected(node: TestNode, ms = 5): { stop: () => boolean } {
    let ever = node.connected;
    const timer = setInterval(() => (ever ||= node.connected), ms);
    return { stop: () => (clearInterval(timer), ever || node.connected) };
  }

  async function expectExactRun(nodeId: string, n: number): Promise<void> {
    const inputs = affineInput(n);
    const job = await control.run('affine', wireInputs(inputs));
    expect(mismatch(job, model, inputs)).toBeUndefined();
    expect(job.node).toBe(nodeId);
  }

  it('1. a node enrolls with a join token, runs a job, and after a restart reconnects by key alone', async () => {
    await expectNoNodeConnected();
    const dataDir = await ownDir();
    const mark = orchLog.lines.length;
    const first = await startNode({ orchestrator, dataDir });
    await waitUntil(() => first.connected, { what: 'node connected' });
    await expectExactRun(first.nodeId, 1);
    const info = await nodeInfo(first.nodeId);
    expect(info).toMatchObject({ state: 'connected', status: 'accepted' });
    // The id is the hash of the key the node proved; the orchestrator shows that key's fingerprint.
    expect(info?.fingerprint).toMatch(/^SHA256:[A-Za-z0-9_-]{43}$/);

    // The token was used once and dropped; the pin of the orchestrator stays.
    const statePath = join(dataDir, 'join-state.json');
    await waitUntil(async () => !('token' in JSON.parse(await readFile(statePath, 'utf8'))), { what: 'token forgotten' });
    const state = JSON.parse(await readFile(statePath, 'utf8')) as { pins: string[]; token?: string };
    expect(state.pins).toEqual([orchestrator.fingerprint]);
    await first.close();
    await waitUntil(async () => (await nodeInfo(first.nodeId))?.state !== 'connected', { what: 'first run gone' });

    // Restart from the same data dir with no join string at all: the address comes from the data dir.
    const again = await startNode({ orchestrator: orchestrator.address, dataDir });
    expect(again.nodeId).toBe(first.nodeId);
    await waitUntil(() => again.connected, { what: 'node reconnected' });
    await expectExactRun(again.nodeId, 2);
    expect(await nodeInfo(again.nodeId)).toMatchObject({ state: 'connected', status: 'accepted', fingerprint: info?.fingerprint });
    // No handshake of this node was refused along the way.
    expect(orchLinesSince(mark, /ORCH-AUTH-5\d\d/)).toEqual([]);
    expect(orchLinesSince(mark, new RegExp(`node registered .*node=${first.nodeId}|node=${first.nodeId}.*node registered`))).toHaveLength(2);
  });

  describe('2. a node that never enrolled is refused', () => {
    it('with a token that was never issued: NODE-AUTH-515 (token refused), ORCH-AUTH-501 reason invalid', async () => {
      const mark = orchLog.lines.length;
      const join = encodeJoinString({ address: orchestrator.address, token: randomBytes(32), fingerprint: orchestrator.fingerprint });
      const node = await startNode({ orchestrator, join });
      const watch = watchConnected(node);
      const fatal = await within(node.fatal, 5_000, 'fatal');
      expect(watch.stop()).toBe(false);
      expect(fatal.code).toBe('NODE-AUTH-515');
      expect(fatal.data).toMatchObject({ remoteFailure: 'token-refused' });
      expect(orchLinesSince(mark, /ORCH-AUTH-501/).filter((l) => l.includes(node.nodeId) && /reason=invalid/.test(l))).toHaveLength(1);
      expect(await nodeInfo(node.nodeId)).toBeUndefined();
      expect(orchLinesSince(mark, /node registered/)).toEqual([]);
    });

    it('with no token at all (only a pin): NODE-AUTH-513 (unknown node), ORCH-AUTH-513', async () => {
      const mark = orchLog.lines.length;
      const dataDir = await ownDir();
      await writeFile(join(dataDir, 'join-state.json'), JSON.stringify({ address: orchestrator.address, pins: [orchestrator.fingerprint] }), { mode: 0o600 });
      const node = await startNode({ orchestrator: orchestrator.address, dataDir });
      const watch = watchConnected(node);
      const fatal = await within(node.fatal, 5_000, 'fatal');
      expect(watch.stop()).toBe(false);
      expect(fatal.code).toBe('NODE-AUTH-513');
      expect(orchLinesSince(mark, /ORCH-AUTH-513/).filter((l) => l.includes(node.nodeId))).toHaveLength(1);
      expect(await nodeInfo(node.nodeId)).toBeUndefined();
    });
  });

  describe('3. join tokens are single-use and expire', () => {
    it('a second node with the same join string is refused (NODE-AUTH-515, reason used); the first stays', async () => {
      const join = await orchestrator.createJoinString();
      const first = await startNode({ orchestrator, join });
      await waitUntil(() => first.connected, { what: 'first node connected' });
      const mark = orchLog.lines.length;
      const second = await startNode({ orchestrator, join });
      expect(second.nodeId).not.toBe(first.nodeId);
      const watch = watchConnected(second);
      const fatal = await within(second.fatal, 5_000, 'fatal');
      expect(watch.stop()).toBe(false);
      expect(fatal.code).toBe('NODE-AUTH-515');
      expect(fatal.data).toMatchObject({ remoteFailure: 'token-refused' });
      expect(orchLinesSince(mark, /ORCH-AUTH-501/).filter((l) => l.includes(second.nodeId) && /reason=used/.test(l))).toHaveLength(1);
      expect(await nodeInfo(second.nodeId)).toBeUndefined();
      expect(first.connected).toBe(true);
    });

    it('an expired token is refused (NODE-AUTH-515, reason expired)', async () => {
      const join = await orchestrator.createJoinString(1000);
      await sleep(1_200);
      const mark = orchLog.lines.length;
      const node = await startNode({ orchestrator, join });
      const watch = watchConnected(node);
      const fatal = await within(node.fatal, 5_000, 'fatal');
      expect(watch.stop()).toBe(false);
      expect(fatal.code).toBe('NODE-AUTH-515');
      expect(orchLinesSince(mark, /ORCH-AUTH-501/).filter((l) => l.includes(node.nodeId) && /reason=expired/.test(l))).toHaveLength(1);
      expect(await nodeInfo(node.nodeId)).toBeUndefined();
    });
  });

  it('4. manual approval: the node waits as pending, retrying, and joins once approved', async () => {
    // Its own orchestrator (and Redis database): approval is a per-orchestrator mode.
    const log = captureLogger('ORCH');
    const manual = await startTestOrchestrator({ redisUrl: `${redis.url}/1`, approval: 'manual', logger: log.logger });
    perTest.add(() => manual.close());
    const admin = createTestControl(manual);
    perTest.add(() => admin.close());
    await admin.addModel('affine', model.bytes);

    const node = await startNode({ orchestrator: manual });
    const pending = await waitUntil(async () => (await admin.listNodes()).find((n) => n.id === node.nodeId && n.status === 'pending'), {
      what: 'node listed as pending',
    });
    expect(pending.state).not.toBe('connected');
    // It keeps trying (NODE-AUTH-510 is retryable): the orchestrator refuses it again and again.
    await waitUntil(() => log.lines.filter((l) => l.includes('ORCH-AUTH-510') && l.includes(node.nodeId)).length >= 2, {
      what: 'a second pending refusal', timeoutMs: 10_000,
    });
    expect(node.connected).toBe(false);
    expect(await hasSettled(node.fatal)).toBe(false);
    // A job submitted now waits: the pending node has no session to run it on.
    const inputs = affineInput(4);
    const job = await admin.infer('affine', wireInputs(inputs));
    await sleep(300);
    expect(await admin.get(job.id)).toMatchObject({ state: 'JOB_STATE_QUEUED', node: '' });

    const approved = await admin.approveNode(node.nodeId);
    expect(approved.status).toBe('accepted');
    await waitUntil(() => node.connected, { what: 'approved node connected', timeoutMs: 20_000 });
    const done = await admin.wait(job.id);
    expect(mismatch(done, model, inputs)).toBeUndefined();
    expect(done.node).toBe(node.nodeId);
    expect((await admin.listNodes()).find((n) => n.id === node.nodeId)).toMatchObject({ state: 'connected', status: 'accepted' });
  });

  it('5. revocation ends a live session within 1 s, no later job goes to the node, and it cannot come back', async () => {
    await expectNoNodeConnected();
    const dataDir = await ownDir();
    const node = await startNode({ orchestrator, dataDir });
    await waitUntil(() => node.connected, { what: 'node connected' });
    await expectExactRun(node.nodeId, 5);
    const mark = orchLog.lines.length;

    const t0 = Date.now();
    const revoked = await control.revokeNode(node.nodeId);
    expect(revoked.status).toBe('revoked');
    const fatal = await within(node.fatal, 1_000, 'revoked node fatal');
    expect(fatal.code).toBe('NODE-AUTH-512');
    await waitUntil(async () => (await nodeInfo(node.nodeId))?.state !== 'connected', {
      what: 'session gone from the list', timeoutMs: Math.max(0, 1_000 - (Date.now() - t0)), intervalMs: 20,
    });
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(node.connected).toBe(false);
    expect(await nodeInfo(node.nodeId)).toMatchObject({ status: 'revoked' });
    expect(orchLinesSince(mark, /ORCH-AUTH-512/).some((l) => l.includes(node.nodeId))).toBe(true);

    // A job submitted now waits: the revoked node has no session.
    const inputs = affineInput(6);
    const job = await control.infer('affine', wireInputs(inputs));
    await sleep(300);
    expect(await control.get(job.id)).toMatchObject({ state: 'JOB_STATE_QUEUED', node: '' });

    // Restarted with its key: refused at the handshake, for good.
    await node.close();
    const restarted = await startNode({ orchestrator: orchestrator.address, dataDir });
    expect(restarted.nodeId).toBe(node.nodeId);
    const watch = watchConnected(restarted);
    expect((await within(restarted.fatal, 5_000, 'restarted node fatal')).code).toBe('NODE-AUTH-512');
    expect(watch.stop()).toBe(false);
    expect(await control.get(job.id)).toMatchObject({ state: 'JOB_STATE_QUEUED', node: '' });

    // Another node picks the job up; the revoked one never ran it.
    const other = await startNode({ orchestrator });
    const done = await control.wait(job.id);
    expect(mismatch(done, model, inputs)).toBeUndefined();
    expect(done.node).toBe(other.nodeId);
  });

  describe('6. a node refuses an orchestrator key it has not pinned', () => {
    it('the real orchestrator, wrong pin in the join string: NODE-AUTH-501 before the token is sent', async () => {
      const real = await orchestrator.createJoinString();
      const { token } = decodeJoinString(real);
      const other = fingerprint(generateIdentity().publicKey);
      const mark = orchLog.lines.length;
      const node = await startNode({ orchestrator, join: encodeJoinString({ address: orchestrator.address, token, fingerprint: other }) });
      const watch = watchConnected(node);
      const fatal = await within(node.fatal, 5_000, 'fatal');
      expect(watch.stop()).toBe(false);
      expect(fatal.code).toBe('NODE-AUTH-501');
      expect(fatal.data).toMatchObject({ failure: 'pin-mismatch' });
      // The node said why (REJECT reason 16); the orchestrator logs the peer's refusal.
      await waitUntil(() => orchLinesSince(mark, /ORCH-AUTH-535/).length > 0, { what: 'ORCH-AUTH-535' });
      expect(await nodeInfo(node.nodeId)).toBeUndefined();
      // The token never left the node (it rides in FINISH, which was never sent): it is still unused.
      const honest = await startNode({ orchestrator, join: real });
      await waitUntil(() => honest.connected, { what: 'the same token enrolls another node' });
    });

    it('an impostor orchestrator with its own key gets HELLO and a REJECT, nothing else', async () => {
      const recorded: NodeFrame__Output[] = [];
      const impostor = new grpc.Server();
      impostor.addService(loadConclaveProtos().conclave.v1.NodeGateway.service, {
        Session(stream: grpc.ServerDuplexStream<NodeFrame__Output, OrchestratorFrame>) {
          const responder = createResponder({ identity: generateIdentity(), hooks: new MemoryEnrollment(), source: 'mitm' });
          stream.on('data', (frame: NodeFrame__Output) => {
            recorded.push(frame);
            if (frame.frame !== 'handshake' || !frame.handshake) return;
            void responder.next(frame.handshake).then((step) => {
              if (step.send) stream.write({ handshake: Buffer.from(step.send) });
            });
          });
          stream.on('error', () => undefined);
          stream.on('end', () => stream.end());
        },
      });
      const port = await new Promise<number>((resolve, reject) => {
        impostor.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
      });
      perTest.add(() => impostor.forceShutdown());
      const address = `127.0.0.1:${port}`;
      // A genuine join string, but the traffic lands on the impostor (DNS or a path attacker).
      const { token } = decodeJoinString(await orchestrator.createJoinString());
      const node = await startNode({ orchestrator: address, join: encodeJoinString({ address, token, fingerprint: orchestrator.fingerprint }) });
      const fatal = await within(node.fatal, 5_000, 'fatal');
      expect(fatal.code).toBe('NODE-AUTH-501');
      await waitUntil(() => recorded.length >= 2, { what: 'the REJECT to arrive', timeoutMs: 2_000 });
      await sleep(200);
      expect(recorded.map((f) => f.frame)).toEqual(['handshake', 'handshake']);
      const [hello, reject] = recorded.map((f) => new Uint8Array(f.handshake ?? []));
      expect([typeOf(hello!), hello!.length]).toEqual([HANDSHAKE_TYPE.hello, 48]);
      expect([typeOf(reject!), reject!.length, reject![8]]).toEqual([HANDSHAKE_TYPE.reject, 17, REASON.pinMismatch]);
      // And the node gave up instead of retrying.
      await sleep(500);
      expect(recorded).toHaveLength(2);
    });
  });

  describe('7. frames outside a session are refused', () => {
    /** Opens a Session with the generated client, writes `frame`, and reports what came back. */
    async function attack(frame: Parameters<ReturnType<ReturnType<typeof createGatewayClient>['Session']>['write']>[0]) {
      const client = createGatewayClient(orchestrator.address);
      perTest.add(() => client.close());
      const call = client.Session();
      const received: OrchestratorFrame__Output[] = [];
      call.on('data', (f: OrchestratorFrame__Output) => received.push(f));
      const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      const ended = new Promise<void>((resolve) => call.on('end', resolve));
      call.on('error', () => undefined);
      call.write(frame);
      await within(ended, 3_000, 'the orchestrator to end the stream');
      call.end();
      return { received, status: await within(status, 3_000, 'status') };
    }

    const cases: Array<[string, Parameters<typeof attack>[0], RegExp]> = [
      ['a plaintext Register (`message`)', {
        message: {
          register: {
            nodeId: 'ab'.repeat(16), name: 'plaintext-intruder', slots: 8,
            capabilities: { cpuCores: 8, backends: ['cpu'], backendActive: 'cpu', agentVersion: '0.1.0' },
          },
        },
      }, /ORCH-NET-603 .*message frame outside an established session/],
      ['a `sealed` garbage frame before any handshake', { sealed: randomBytes(64) }, /ORCH-NET-603 .*sealed frame outside an established session/],
    ];

    it.each(cases)('%s: the stream is ended, no node is listed, a waiting job goes to the next real node', async (_, frame, logged) => {
      await expectNoNodeConnected();
      const before = new Set((await control.listNodes()).map((n) => n.id));
      const inputs = affineInput(7);
      const job = await control.infer('affine', wireInputs(inputs));
      const mark = orchLog.lines.length;

      const { received, status } = await attack(frame);
      expect(received).toEqual([]);
      // A protocol violation ends the call with its catalog status, the code first in the details.
      expect(status.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(status.details).toMatch(/^ORCH-NET-603 /);
      await waitUntil(() => orchLinesSince(mark, logged).length === 1, { what: 'the refusal logged' });
      const after = await control.listNodes();
      expect(after.filter((n) => !before.has(n.id))).toEqual([]);
      expect(after.some((n) => n.name === 'plaintext-intruder' || n.id === 'ab'.repeat(16))).toBe(false);
      await sleep(300);
      expect(await control.get(job.id)).toMatchObject({ state: 'JOB_STATE_QUEUED', node: '' });

      const node = await startNode({ orchestrator });
      const done = await control.wait(job.id);
      expect(mismatch(done, model, inputs)).toBeUndefined();
      expect(done.node).toBe(node.nodeId);
    });
  });

  describe('10. a session the orchestrator ends for a failure says why, in a CLOSE and in the gRPC status', () => {
    /**
     * A hand-driven node: a real handshake (enrolled with a fresh join token), then whatever
     * `onEstablished` sends. Reports why the session ended and the call's status.
     */
    async function handDrivenNode(
      onEstablished: (send: (m: NodeMessage) => void, nodeId: string, call: grpc.ClientDuplexStream<object, unknown>) => void,
    ) {
      const identity = generateIdentity();
      const nodeId = nodeIdFromPublicKey(identity.publicKey);
      const { token } = decodeJoinString(await orchestrator.createJoinString());
      const client = createGatewayClient(orchestrator.address);
      perTest.add(() => client.close());
      const call = client.Session();
      const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      const closed = new Promise<ConclaveError>((resolve) => {
        const session: SecureSession<NodeMessage, OrchestratorMessage__Output> = new SecureSession({
          stream: grpcFrameStream(call),
          side: { role: 'initiator', handshake: createInitiator({ identity, pins: new PinSet([orchestrator.fingerprint]), token }) },
          encode: encodeNodeMessage,
          decode: decodeOrchestratorMessage,
          codes: { failed: 'NODE-NET-601', ended: 'NODE-NET-602', protocol: 'NODE-NET-605' },
          peerName: 'orchestrator',
          logger: captureLogger('NODE').logger,
          onEstablished: () => onEstablished((m) => session.send(m), nodeId, call as grpc.ClientDuplexStream<object, unknown>),
          onMessage: () => undefined,
          onClosed: resolve,
        });
      });
      return {
        closed: await within(closed, 8_000, 'the session to end'),
        status: await within(status, 3_000, 'the call status'),
      };
    }

    const register = (nodeId: string): NodeMessage => ({
      register: {
        nodeId, name: 'hand-driven', slots: 1,
        capabilities: { cpuCores: 1, backends: ['cpu'], backendActive: 'cpu', agentVersion: '0.1.0' },
      },
    });

    it('a Register naming another node: CLOSE reason 21 (protocol), status FAILED_PRECONDITION ORCH-NET-603', async () => {
      const { closed, status } = await handDrivenNode((send) => send(register('ab'.repeat(16))));
      expect(closed.code).toBe('NODE-AUTH-535');
      expect(closed.data).toMatchObject({ remoteFailure: 'protocol', remoteReason: 21 });
      expect(closed.message).toContain('ORCH-NET-603');
      expect(status.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(status.details).toMatch(/^ORCH-NET-603 /);
      expect(status.metadata.get('conclave-error-code')).toEqual(['ORCH-NET-603']);
    });

    it('a Register sent twice: the same protocol reason and status', async () => {
      const { closed, status } = await handDrivenNode((send, nodeId) => {
        send(register(nodeId));
        send(register(nodeId));
      });
      expect(closed.data).toMatchObject({ remoteFailure: 'protocol', remoteReason: 21 });
      expect(status.code).toBe(grpc.status.FAILED_PRECONDITION);
    });

    it('a sealed frame that fails authentication: CLOSE reason 17, status UNAUTHENTICATED, ORCH-AUTH-530 logged once', async () => {
      const mark = orchLog.lines.length;
      const { closed, status } = await handDrivenNode((send, nodeId, call) => {
        send(register(nodeId));
        // Counter 1 follows the Register, as expected, but no key sealed these bytes.
        const forged = Buffer.alloc(8 + 40, 7);
        forged.writeBigUInt64BE(1n, 0);
        setTimeout(() => call.write({ sealed: forged }), 300);
      });
      expect(closed.code).toBe('NODE-AUTH-535');
      expect(closed.data).toMatchObject({ remoteFailure: 'frame-auth', remoteReason: 17 });
      expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(status.details).toMatch(/^ORCH-AUTH-530 /);
      await sleep(100);
      // One line logs the failure; the node session's lifecycle lines (info) may name its code.
      const failureLines = orchLinesSince(mark, /ORCH-AUTH-530/).filter((l) => / (WARN|ERROR) /.test(l));
      expect(failureLines, orchLog.lines.slice(mark).join('\n')).toHaveLength(1);
    });
  });

  it('8. a flood of handshakes from another address is rate-limited with few log lines; a real node still joins', async () => {
    const ATTACKER = '127.0.0.2';
    const CONNECTIONS = 3;
    const STREAMS_PER_WAVE = 34;
    const MIN_ATTEMPTS = 300;
    const connections: RawGatewayConnection[] = [];
    for (let i = 0; i < CONNECTIONS; i++) {
      const c = await RawGatewayConnection.connect(orchestrator.address, ATTACKER);
      perTest.add(() => c.close());
      expect(c.localAddress).toBe(ATTACKER);
      connections.push(c);
    }
    const attacker = generateIdentity();
    const pins = new PinSet([orchestrator.fingerprint]);
    const hello = () => encodeBytesField(FRAME_FIELD.handshake, createInitiator({ identity: attacker, pins }).start());
    const mark = orchLog.lines.length;

    // Waves of streams until the legitimate node is in (and at least MIN_ATTEMPTS), so that its
    // handshake happens in the middle of the flood.
    const t0 = Date.now();
    let joinedAt = 0;
    const legit = (async () => {
      const node = await startNode({ orchestrator });
      await waitUntil(() => node.connected, { what: 'legitimate node connected', timeoutMs: 5_000, intervalMs: 20 });
      joinedAt = Date.now();
      return node;
    })();
    legit.catch(() => undefined);
    const results: RawSessionResult[] = [];
    while ((joinedAt === 0 || results.length < MIN_ATTEMPTS) && Date.now() - t0 < 8_000) {
      results.push(...(await Promise.all(connections.flatMap((c) =>
        Array.from({ length: STREAMS_PER_WAVE }, () => c.session([hello()], { stopOn: () => true, timeoutMs: 10_000 }))))));
      // Paced (still ~100 times the refill rate): the attacker shares this process's one event loop
      // with the orchestrator and the node, and must not starve them of CPU.
      await sleep(100);
    }
    const floodSeconds = (Date.now() - t0) / 1000;
    const node = await legit;
    expect(joinedAt - t0).toBeLessThan(5_000);
    expect(results.length).toBeGreaterThanOrEqual(MIN_ATTEMPTS);

    const firstFrames = results.map((r) => r.frames[0]);
    expect(results.filter((r) => r.error)).toEqual([]);
    expect(firstFrames.every((f) => f?.field === FRAME_FIELD.handshake)).toBe(true);
    const rejects = firstFrames.filter((f) => typeOf(f!.bytes) === HANDSHAKE_TYPE.reject);
    const responses = firstFrames.filter((f) => typeOf(f!.bytes) === HANDSHAKE_TYPE.response);
    expect(rejects.length + responses.length).toBe(results.length);
    expect(rejects.every((f) => f!.bytes[8] === REASON.rateLimited)).toBe(true);
    // A burst of 20, then 5 a second.
    const allowed = 20 + Math.ceil(5 * floodSeconds) + 1;
    expect(responses.length).toBeGreaterThanOrEqual(20);
    expect(responses.length).toBeLessThanOrEqual(allowed);
    expect(rejects.length).toBeGreaterThanOrEqual(results.length - allowed);

    // One line per run of refusals, not one per refusal: a run is only broken by a refill.
    const lines = orchLinesSince(mark, /ORCH-AUTH-509/);
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.length).toBeLessThanOrEqual(1 + Math.ceil(5 * floodSeconds));
    expect(lines.length).toBeLessThan(rejects.length / 10);
    expect(lines.every((l) => l.includes(ATTACKER))).toBe(true);
    // The node's own source (127.0.0.1) was never limited.
    expect(orchLinesSince(mark, /ORCH-AUTH-509/).filter((l) => !l.includes(ATTACKER))).toEqual([]);
    await expectExactRun(node.nodeId, 8);
  });

  it('9. a node whose clock is 10 minutes off is refused with the clock-skew code on both sides, and stops', async () => {
    const mark = orchLog.lines.length;
    const node = await startNode({ orchestrator, now: () => Date.now() + 10 * 60_000 });
    const watch = watchConnected(node);
    const fatal = await node.fatal;
    expect(fatal.code).toBe('NODE-AUTH-507');
    expect(fatal.message).toMatch(/clock/);
    expect(watch.stop()).toBe(false);
    await waitUntil(() => orchLinesSince(mark, /ORCH-AUTH-507/).length > 0, { what: 'the orchestrator logging the skew' });
    expect(await nodeInfo(node.nodeId)).toBeUndefined();
  });
});
