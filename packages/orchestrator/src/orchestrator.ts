import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { ConclaveError, assertPortFree, launchRedis, maskUrlCredentials } from '@conclave/common';
import type { RedisServerHandle } from '@conclave/common';
import {
  DEFAULT_CHANNEL_OPTIONS, HandshakeRateLimiter, tlsCertificateFingerprint, encodeJoinString, fingerprint, loadConclaveProtos, loadOrCreateIdentity,
} from '@conclave/protocol';
import { createAdminService } from './admin-service.js';
import { Chat } from './chat/chat.js';
import type { ChatApi } from './chat/chat-api.js';
import { ChatAssistant } from './chat/chat-assistant.js';
import { createChatControlService } from './chat/chat-control-service.js';
import { runGenerateJob } from './internal-jobs.js';
import { createControlService, createJobSubmitter } from './control-service.js';
import { fleetDashboardSources } from './dashboard/fleet-sources.js';
import type { JobData } from './dispatcher.js';
import { Dispatcher } from './dispatcher.js';
import { MAX_SEALED_MESSAGE_BYTES, createGatewayService } from './gateway-service.js';
import { startHttpServer } from './http-server.js';
import { JobStore } from './job-store.js';
import { createLogControlService } from './logs/log-control-service.js';
import { LogMetrics } from './logs/log-metrics.js';
import { LogStore } from './logs/log-store.js';
import { OrchestratorLogSink } from './logs/orchestrator-log-sink.js';
import { readKeyRotations } from './key-rotation.js';
import { createOrchestratorMetrics } from './metrics.js';
import { ModelRegistry } from './model-registry.js';
import { RedisEnrollmentStore } from './enrollment-store.js';
import { NodeRegistry } from './node-registry.js';
import { resolveOrchestratorOptions, type OrchestratorOptions } from './orchestrator-options.js';
import { loadOrCreateOperatorToken, operatorAuthInterceptor } from './operator-auth.js';
import { connectRedis, loadOrCreateRedisPassword, redisAvailable } from './redis-connection.js';
import { stateStoreGuard } from './state-store-guard.js';
import { BULL_PREFIX, JOB_QUEUE_NAME } from './redis-keys.js';
import { ORCHESTRATOR_VERSION } from './version.js';

// From package.json (version.ts); exported here for the front door and earlier callers.
export { ORCHESTRATOR_VERSION };

// The front door (index.ts) and earlier callers import the options type from here.
export type { OrchestratorOptions } from './orchestrator-options.js';

/** How long one shutdown step (a server, the queue, a connection) may take. */
const CLOSE_STEP_TIMEOUT_MS = 3_000;

/**
 * What the server reads: nothing larger than the largest sealed frame (a job's inputs or a
 * result, DEFAULT_MAX_PLAINTEXT_BYTES) plus its framing. The clients' 64 MiB would let any
 * caller, before authentication, make the orchestrator buffer 64 MiB per message.
 */
const SERVER_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  ...DEFAULT_CHANNEL_OPTIONS,
  'grpc.max_receive_message_length': MAX_SEALED_MESSAGE_BYTES,
};

/** How long /readyz waits for Redis to answer before it reports it unreachable. */
const READINESS_TIMEOUT_MS = 1_000;

export interface OrchestratorHandle {
  grpcPort: number;
  httpPort: number;
  /** `host:port` for nodes and clients. */
  address: string;
  redisUrl: string;
  /** Present when the orchestrator started its own redis-server. */
  embeddedRedis?: RedisServerHandle;
  /** `SHA256:…` fingerprint of the orchestrator's key, as join strings pin it. */
  fingerprint: string;
  /** Where the key, the operator token and the model files live. */
  dataDir: string;
  /** The Control API's bearer token. */
  operatorToken: string;
  /** The group chat (tests and benchmarks drive it in process). */
  chat: ChatApi;
  /** A single-use join string (`orchestrator token create`), for tests and the local fleet. */
  createJoinString(ttlMs?: number): Promise<string>;
  close(): Promise<void>;
}

export async function startOrchestrator(options: OrchestratorOptions): Promise<OrchestratorHandle> {
  const o = resolveOrchestratorOptions(options);
  const logger = o.logger;
  // Keys, tokens, the Redis password and the AOF live here: this user's alone, also when it existed.
  await mkdir(o.dataDir, { recursive: true, mode: 0o700 });
  await chmod(o.dataDir, 0o700).catch((err: NodeJS.ErrnoException) => {
    // Another user's dir (a volume mounted as root): theirs to tighten; the files in it are 0600.
    if (err.code !== 'EPERM') throw err;
    logger.warn('STATE', 'data dir belongs to another user; its mode is left as it is', { dataDir: o.dataDir });
  });
  const cleanups: Array<() => Promise<unknown>> = [];
  let redisToClose: Redis | undefined;
  const closeAll = async () => {
    // With Redis unreachable, every step that talks to it (BullMQ's close, QUIT) would wait out
    // its bound: cutting the connection first fails its queued commands at once and ends the
    // retries, so the stop takes no longer than the servers' own shutdown.
    if (redisToClose !== undefined && !redisAvailable(redisToClose)) {
      logger.info('CLEAN', 'redis unreachable; closing without waiting for it', { status: redisToClose.status });
      redisToClose.disconnect();
    }
    // Each step gets a bounded time: with Redis gone, BullMQ's close would wait for it forever.
    for (const cleanup of cleanups.reverse()) {
      const done = await Promise.race([
        cleanup().then(() => true, () => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), CLOSE_STEP_TIMEOUT_MS).unref()),
      ]);
      if (!done) logger.warn('CLEAN', 'shutdown step did not finish in time; going on', { timeoutMs: CLOSE_STEP_TIMEOUT_MS });
    }
  };

  try {
    // Before anything starts: a taken port is the commonest start-up failure, and found after
    // Redis is up it would come wrapped in Redis's start and stop lines.
    await assertPortFree({ host: o.grpcHost, port: o.grpcPort, errorCode: 'ORCH-NET-604', listener: 'gRPC' });
    if (o.httpPort > 0) await assertPortFree({ host: o.httpHost, port: o.httpPort, errorCode: 'ORCH-NET-605', listener: 'HTTP' });
    // Bad input too: a TLS file that is no PEM is found before anything starts or is written.
    const credentials = o.tls ? await serverTlsCredentials(o.tls) : grpc.ServerCredentials.createInsecure();
    // With TLS, join strings pin the certificate (its leaf, DER, SHA-256) too: a board then
    // connects with TLS from its first start (`token create` and createJoinString alike).
    const tlsFingerprint = o.tls ? tlsCertificateFingerprint(await readFile(o.tls.certPath)) : undefined;
    let embeddedRedis: RedisServerHandle | undefined;
    if (!o.redisUrl) {
      // A password, so that no other local process can rewrite the state (one HSET un-revokes a
      // node); restartOnExit, so that a crashed Redis does not leave the fleet down until a restart.
      const launched = await launchRedis({
        dir: join(o.dataDir, 'redis'), logger, password: loadOrCreateRedisPassword(o.dataDir), restartOnExit: true,
      });
      embeddedRedis = launched;
      cleanups.push(() => launched.stop());
      logger.info('STATE', 'started embedded redis-server (no --redis-url given)', { redis: maskUrlCredentials(launched.url), dir: launched.dir });
    }
    const redisUrl: string = o.redisUrl ?? embeddedRedis?.url ?? '';
    const redis: Redis = await connectRedis({ url: redisUrl, logger });
    redisToClose = redis;
    // QUIT lets queued commands finish; with Redis down it would wait for a reconnect that may not come.
    cleanups.push(async () => (redisAvailable(redis) ? redis.quit() : redis.disconnect()));

    const queue = new Queue<JobData>(JOB_QUEUE_NAME, { connection: redis, prefix: BULL_PREFIX });
    cleanups.push(() => queue.close());
    const jobs = new JobStore(redis, o.resultTtlSeconds, { logger });
    const models = new ModelRegistry(redis, o.dataDir, logger);
    const registry = new NodeRegistry(redis, logger, o.heartbeatIntervalMs);
    registry.start();
    cleanups.push(async () => registry.stop());
    const dispatcher = new Dispatcher({ redis, registry, jobs, logger });
    cleanups.push(() => dispatcher.close());
    // Its own connection, auto-pipelined: the posts of one turn (a node's batch, many nodes'
    // requests) go to Redis in one write instead of one syscall each, without touching how
    // BullMQ's commands travel on the main connection.
    const chatRedis = redis.duplicate({ enableAutoPipelining: true });
    cleanups.push(async () => (redisAvailable(chatRedis) ? chatRedis.quit() : chatRedis.disconnect()));
    const chat = new Chat(chatRedis, logger, o.chat);
    cleanups.push(async () => chat.close());
    await chat.ensureFleet();
    // The fleet log store, on its own auto-pipelined connection like the chat: many nodes'
    // small batches and the orchestrator's own go to Redis in few writes.
    const logRedis = redis.duplicate({ enableAutoPipelining: true });
    cleanups.push(async () => (redisAvailable(logRedis) ? logRedis.quit() : logRedis.disconnect()));
    const logStore = new LogStore(logRedis, o.logs);
    const logMetrics = new LogMetrics();
    if (o.logTap) {
      const sink = new OrchestratorLogSink(o.logTap, logStore, logMetrics);
      // Closed late (cleanups run in reverse): the stop's own lines are stored too.
      cleanups.push(() => sink.close());
    }
    // Ready means ready: a stop right after start must not find BullMQ still connecting.
    await queue.waitUntilReady();
    await dispatcher.ready();

    const { identity } = await loadOrCreateIdentity(o.dataDir, { role: 'orchestrator' });
    const orchestratorFingerprint = fingerprint(identity.publicKey);
    // Served in every handshake so that nodes pinned to a retired key follow the chain to this one.
    const rotations = await readKeyRotations(o.dataDir);
    const operatorToken = await loadOrCreateOperatorToken({ dataDir: o.dataDir, ...(o.operatorToken ? { fromEnv: o.operatorToken } : {}) });
    const enrollment = new RedisEnrollmentStore(redis, { approval: o.approval });
    registry.setEnrollment(enrollment);

    const protos = loadConclaveProtos().conclave.v1;
    const server = new grpc.Server({
      ...SERVER_CHANNEL_OPTIONS,
      // Control calls are refused on their headers, before any of the request is read.
      interceptors: [operatorAuthInterceptor(operatorToken, logger, { tls: Boolean(o.tls), insecureControl: o.insecureControl })],
    });
    server.addService(protos.NodeGateway.service, createGatewayService({
      registry, models, logger, heartbeatIntervalMs: o.heartbeatIntervalMs, version: ORCHESTRATOR_VERSION,
      identity, enrollment, rateLimiter: new HandshakeRateLimiter(), rotations, maxSlotsPerNode: o.maxSlotsPerNode,
      modelTransferStallMs: o.modelTransferStallMs,
      onUnmatchedResult: (session, result) => void dispatcher.recordUnmatchedResult(session, result),
      chat, redisAvailable: () => redisAvailable(chatRedis),
      logs: { store: logStore, metrics: logMetrics, ratePerSecond: o.logs.nodeRatePerSecond },
    }));
    // Filled in after binding (with port 0 the port is known only then); join tokens read it later.
    let advertiseAddress = o.advertiseAddress ?? '';
    const stateStore = stateStoreGuard(redis);
    const logService = createLogControlService({
      store: logStore, logger, nodes: () => registry.list(), jobState: async (jobId) => (await jobs.peek(jobId))?.state,
      stateStore: stateStoreGuard(logRedis),
    });
    const controlHandlers = {
      ...createControlService({
        redis, queue, jobs, models, registry, dispatcher, logger, stateStore,
        defaultJobTimeoutMs: o.defaultJobTimeoutMs, maxQueuedJobs: o.maxQueuedJobs, jobAttempts: o.jobAttempts,
      }),
      ...createAdminService({
        store: enrollment, orchestratorFingerprint, defaultTokenTtlMs: o.defaultTokenTtlMs, logger,
        get advertiseAddress() {
          return advertiseAddress;
        },
        closeNodeSessions: (nodeId: string, reason: string) => registry.revoke(nodeId, reason),
        stateStore,
        tlsFingerprint,
      }),
      ...createChatControlService({ chat, logger, stateStore }),
      ...logService.handlers,
    };
    server.addService(protos.Control.service, controlHandlers);
    // The assistant's generations are jobs like an operator's: same checks, queue and limits.
    const submitInternal = createJobSubmitter({
      redis, queue, jobs, models, logger, defaultJobTimeoutMs: o.defaultJobTimeoutMs, maxQueuedJobs: o.maxQueuedJobs, jobAttempts: o.jobAttempts,
    });
    const assistant = new ChatAssistant({
      chat, logger,
      textModelPresent: () => registry.live().some((node) => node.schedulable && node.features.includes('text-generation')),
      generate: (prompt, maxTokens) => runGenerateJob({ submit: submitInternal, jobs, timeoutMs: o.defaultJobTimeoutMs }, prompt, maxTokens),
    });
    assistant.start();
    cleanups.push(async () => assistant.stop());
    if (!o.tls && !isLoopback(o.grpcHost)) {
      logger.warn('AUTH', o.insecureControl
        ? 'Control API in plaintext open to the network (--insecure-control): operator tokens cross it in the clear'
        : 'Control API without TLS: it answers loopback callers only (give --tls-cert/--tls-key to reach it from the network)', { listen: o.grpcHost });
    }
    const grpcPort = await bind(server, `${o.grpcHost}:${o.grpcPort}`, credentials);
    const localHost = ['0.0.0.0', '::', ''].includes(o.grpcHost) ? '127.0.0.1' : o.grpcHost;
    if (!advertiseAddress) advertiseAddress = isLoopback(localHost) && localHost === o.grpcHost ? `${localHost}:${grpcPort}` : `${hostname()}:${grpcPort}`;
    cleanups.push(() => shutdownServer(server));
    // Before the server's shutdown, which would cut log followers as CANCELLED: ended as
    // UNAVAILABLE, each follows again from its last record.
    cleanups.push(async () => logService.close());
    let serving = true;
    dispatcher.start();

    let httpPort = -1;
    if (o.httpPort >= 0) {
      const http = await startHttpServer({
        host: o.httpHost, port: o.httpPort, logger,
        dashboard: {
          operatorToken, allowRemotePlaintext: o.insecureControl, sources: fleetDashboardSources({ registry, queue, chat, jobs }),
        },
        logs: logStore,
        metrics: Registry.merge([createOrchestratorMetrics({ queue, jobs, registry, models }), logMetrics.registry]),
        readiness: async () => {
          const failed: string[] = [];
          if (!serving) failed.push('grpc');
          // ioredis queues commands while disconnected; a probe must answer promptly either way.
          const answered = await Promise.race([
            redis.ping().then(() => true, () => false),
            new Promise<boolean>((resolve) => setTimeout(() => resolve(false), READINESS_TIMEOUT_MS).unref()),
          ]);
          if (!answered) failed.push('redis');
          return failed;
        },
      });
      httpPort = http.port;
      cleanups.push(() => http.close());
    }

    const address = `${localHost}:${grpcPort}`;
    logger.info('STATE', 'orchestrator ready', {
      grpc: address, listen: `${o.grpcHost}:${grpcPort}`, advertise: advertiseAddress, tls: Boolean(o.tls), http: httpPort,
      redis: maskUrlCredentials(redisUrl), dataDir: o.dataDir, fingerprint: orchestratorFingerprint, keyRotations: rotations.length, approval: o.approval,
    });
    return {
      grpcPort, httpPort, address, redisUrl, ...(embeddedRedis ? { embeddedRedis } : {}),
      fingerprint: orchestratorFingerprint,
      dataDir: o.dataDir,
      operatorToken,
      chat,
      async createJoinString(ttlMs = o.defaultTokenTtlMs) {
        const created = await enrollment.createToken(ttlMs);
        return encodeJoinString({
          address: advertiseAddress, token: created.token, fingerprint: orchestratorFingerprint, ...(tlsFingerprint ? { tlsFingerprint } : {}),
        });
      },
      async close() {
        serving = false;
        // First, while node sessions are open: jobs go back to the queue as they are, nothing is
        // cancelled, and what nodes run reaches the next orchestrator from their outboxes.
        await Promise.race([dispatcher.close().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, CLOSE_STEP_TIMEOUT_MS).unref())]);
        await closeAll();
        logger.info('STATE', 'orchestrator stopped');
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/**
 * Reads and checks the PEM pair before gRPC sees it: grpc-js reports a bad certificate only as a
 * failed bind, which would read as "port unavailable".
 */
async function serverTlsCredentials(tls: { certPath: string; keyPath: string }): Promise<grpc.ServerCredentials> {
  const read = async (path: string, what: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new ConclaveError('ORCH-AUTH-557', { detail: `${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, data: { path }, cause: err });
    }
  };
  const [cert, key] = await Promise.all([read(tls.certPath, '--tls-cert'), read(tls.keyPath, '--tls-key')]);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (err) {
    throw new ConclaveError('ORCH-AUTH-557', { detail: `--tls-cert ${tls.certPath} is not a PEM certificate`, data: { path: tls.certPath }, cause: err });
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new ConclaveError('ORCH-AUTH-557', { detail: `--tls-key ${tls.keyPath} is not a PEM private key`, data: { path: tls.keyPath }, cause: err });
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new ConclaveError('ORCH-AUTH-557', {
      detail: `--tls-key ${tls.keyPath} does not belong to the certificate in --tls-cert ${tls.certPath}`,
      data: { certPath: tls.certPath, keyPath: tls.keyPath },
    });
  }
  return grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }], false);
}

function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => {
      if (err) reject(new ConclaveError('ORCH-NET-604', { detail: `gRPC ${address}: ${err.message}`, data: { listener: 'gRPC', address }, cause: err }));
      else resolve(port);
    });
  });
}

function shutdownServer(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    // Give streams a moment to close cleanly, then cut them.
    const force = setTimeout(() => server.forceShutdown(), 2_000);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
