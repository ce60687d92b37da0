import type { Server } from 'node:http';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { ConclaveError, assertPortFree, type LogTap } from '@conclave/common';
import type { ClientOptions, JobResult } from '@conclave/protocol';
import { selectBackend } from './hailo/backend-selection.js';
import { JobRunner } from './job-runner.js';
import { ModelFetcher } from './model-fetcher.js';
import { ModelStore } from './model-store.js';
import { startNodeHttp } from './node-http.js';
import { NodeCredentials } from './node-credentials.js';
import { activeBackend, heartbeatMessage, registerMessage, type NodeStatusSources } from './node-status.js';
import { pinnedTls, readTlsCa } from './orchestrator-tls.js';
import { resolveNodeAgentOptions, type NodeAgentOptions } from './node-agent-options.js';
import { OrchestratorLink } from './orchestrator-link.js';
import { Outbox } from './outbox.js';
import { ChatClient } from './chat/chat-client.js';
import { ChatCursors } from './chat/chat-cursors.js';
import { ChatOutbox } from './chat/chat-outbox.js';
import { CHAT_SOCKET_FILE, ChatSocketServer } from './chat/chat-socket.js';
import { registerLogShippingMetrics } from './logs/log-metrics.js';
import { LogShipper } from './logs/log-shipper.js';
import { AGENT_VERSION } from './version.js';


export type { NodeAgentOptions } from './node-agent-options.js';

export interface NodeAgentHandle {
  nodeId: string;
  /** Settles when the agent gave up on an authentication failure an operator must fix. */
  readonly fatal: Promise<ConclaveError>;
  httpPort: number;
  readonly connected: boolean;
  close(): Promise<void>;
}

export async function startNodeAgent(given: NodeAgentOptions): Promise<NodeAgentHandle> {
  const options = resolveNodeAgentOptions(given);
  const requestedPort = options.httpPort;
  // Before the join: a taken port found after enrolling would spend the join token on a start
  // that then fails.
  if (requestedPort > 0) {
    await assertPortFree({ port: requestedPort, host: options.httpHost, errorCode: 'NODE-NET-604', listener: 'local HTTP' });
  }
  // Before the join too: a bad --tls-ca found later would have spent the token.
  const tlsCa = options.tlsCa !== undefined ? await readTlsCa(options.tlsCa) : undefined;
  const credentials = await NodeCredentials.load(options.dataDir, options.join);
  const nodeId = credentials.nodeId;
  const orchestrator = options.orchestrator ?? credentials.address;
  if (!orchestrator) throw new ConclaveError('NODE-STATE-702', { detail: 'no orchestrator address: pass --orchestrator or --join' });
  const logger = options.logger.child({ node: nodeId });
  const { slots } = options;
  const name = options.name ?? nodeId.slice(0, 12);

  const store = new ModelStore({ dir: join(options.dataDir, 'models'), logger });
  await store.verifyAll();
  const outbox = new Outbox(join(options.dataDir, 'outbox'), { logger });
  await outbox.open();
  let stopResending: () => void = () => undefined;
  const chatLogger = logger.withPrefix('CHAT');
  const chatOutbox = await ChatOutbox.open(join(options.dataDir, 'chat-outbox'), { logger: chatLogger });
  const chatCursors = await ChatCursors.open(join(options.dataDir, 'chat', 'cursors.json'), { logger: chatLogger });
  const logShipper = options.logTap ? await openLogShipper(options.logTap) : undefined;
  // The runner and fetcher send through the link, and the link hands them their work:
  // the references close the loop after construction.
  const parts: { runner?: JobRunner; fetcher?: ModelFetcher } = {};
  const selected = !options.inference
    ? undefined
    : options.backend
      ? { backend: options.backend, backends: [options.backend.name], reason: 'given', close: () => options.backend!.dispose() }
      : await selectBackend({
        kind: options.backendKind, slots, logger, dataDir: options.dataDir,
        ...(options.detectionRoot ? { detectionRoot: options.detectionRoot } : {}),
        ...(options.hailoSocket ? { hailoSocket: options.hailoSocket } : {}),
        ...(options.hailoSidecarCommand ? { hailoSidecarCommand: options.hailoSidecarCommand } : {}),
        ...(options.hailoSidecarEnv ? { hailoSidecarEnv: options.hailoSidecarEnv } : {}),
        ...(options.hailo ? { hailo: options.hailo } : {}),
        fetchArtifact: (artifact) => {
          if (!parts.fetcher) return Promise.reject(new ConclaveError('NODE-NET-603', { detail: 'not connected yet' }));
          return parts.fetcher.ensure({ name: `${artifact.role}${artifact.chip ? `:${artifact.chip}` : ''}`, sha256: artifact.sha256, size: artifact.size });
        },
      });
  const backend = selected?.backend;
  const backends = selected?.backends ?? [];

  const eventLoopDelay = monitorEventLoopDelay({ resolution: 10 });
  eventLoopDelay.enable();

  let reportFatal: (err: ConclaveError) => void = () => {};
  const fatal = new Promise<ConclaveError>((resolve) => {
    reportFatal = resolve;
  });
  // --tls-ca or --tls: TLS checked against those roots and the host name; they win over the join
  // string, so that an operator can move boards past a renewed certificate. Otherwise the join
  // string's certificate digest means TLS with that certificate pinned; neither, plaintext.
  const tlsFingerprint = credentials.tlsFingerprint;
  const transport: { tls?: ClientOptions['tls']; channel?: () => Promise<ClientOptions> } = tlsCa || options.tls
    ? { tls: tlsCa ? { ca: tlsCa } : {} }
    : tlsFingerprint
      ? { channel: async () => ({ tls: await pinnedTls({ address: orchestrator, fingerprint: tlsFingerprint, dataDir: options.dataDir, logger }) }) }
      : {};
  const status = (): NodeStatusSources => {
    const accelerator = backend?.accelerator?.();
    return {
      nodeId, name, slots, store, outbox, runner: jobRunner, ...(backend ? { backend } : {}),
      capabilities: {
        cpuCores: cpus().length, memoryBytes: totalmem(), backends,
        backendActive: activeBackend({ ...(backend ? { backend } : {}) }),
        backendReason: selected?.reason ?? '',
        features: options.features, agentVersion: AGENT_VERSION,
        ...(accelerator ? { accelerator } : {}),
      },
    };
  };
  const link: OrchestratorLink = new OrchestratorLink({
    address: orchestrator,
    logger,
    identity: credentials.identity,
    pins: credentials.pins,
    token: () => credentials.token,
    onEstablished: ({ addedPins }) => credentials.addPins(addedPins),
    ...(options.now ? { now: options.now } : {}),
    ...transport,
    register: () => registerMessage(status()),
    heartbeat: () => heartbeatMessage(status()),
    handler: {
      assign: (job) => void parts.runner?.run(job),
      cancel: (cancel) => parts.runner?.cancel(cancel.jobId, cancel.attempt, cancel.reason),
      modelChunk: (chunk) => void parts.fetcher?.onChunk(chunk),
      // Never left to reject: an ack naming no file (`../x`) or a file that cannot be removed
      // (NODE-STATE-709) is logged, not an unhandled rejection that would end the agent.
      resultAck: (ack) => void outbox.ack(ack.jobId, ack.attempt).catch((err: unknown) => logger.failure(err, {}, 'warn')),
      chatReplies: (replies) => chat.receiveReplies(replies),
      chatDelivery: (delivery) => chat.receiveDelivery(delivery),
      logAck: (ack) => logShipper?.ack(ack),
      connected: () => {
        void credentials.forgetToken();
        // Results that never got their ack (dropped link, reboot) go again, now and then every
        // RESEND_INTERVAL_MS while unacknowledged (the orchestrator acks only what Redis holds);
        // the orchestrator stores each job:attempt once.
        const send = (result: JobResult) => link.send({ result });
        const count = outbox.resendAll(send);
        if (count) logger.info('NET', 'resent unacknowledged results', { count });
        stopResending();
        stopResending = outbox.startResending(send);
        chat.connected();
        logShipper?.connected();
      },
      disconnected: () => {
        stopResending();
        chat.disconnected();
        logShipper?.disconnected();
        void parts.fetcher?.abortAll('session lost');
        void outbox.persistAll().catch((err: unknown) => logger.failure(err, { section: 'STATE' }));
      },
      fatal: (err) => reportFatal(err),
    },
  });
  const chat: ChatClient = new ChatClient({
    transport: {
      send: (message) => link.send(message),
      get connected() {
        return link.state === 'connected';
      },
    },
    outbox: chatOutbox,
    cursors: chatCursors,
    logger: chatLogger,
  });
  const fetcher = new ModelFetcher(store, (m) => link.send(m), logger);
  const jobRunner: JobRunner = new JobRunner({
    ...(backend ? { backend } : {}), fetcher, outbox, logger, send: (m) => link.send(m),
    ...(options.extraKinds ? { extraKinds: options.extraKinds } : {}),
  });
  parts.runner = jobRunner;
  parts.fetcher = fetcher;

  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics, prefix: 'conclave_node_' });
  new Gauge({ name: 'conclave_node_jobs_running', help: 'Jobs running now.', registers: [metrics], collect() { this.set(jobRunner.running); } });
  new Gauge({
    name: 'conclave_node_event_loop_delay_max_seconds', help: 'Max event-loop delay since the last scrape.', registers: [metrics],
    collect() { this.set(eventLoopDelay.max / 1e9); eventLoopDelay.reset(); },
  });
  new Counter({ name: 'conclave_node_info', help: 'Agent version.', labelNames: ['version', 'node'], registers: [metrics] })
    .inc({ version: AGENT_VERSION, node: nodeId }, 0);
  registerLogShippingMetrics(metrics, () => logShipper?.stats());

  let httpPort = -1;
  let httpServer: Server | undefined;
  if (requestedPort >= 0) {
    const http = await startNodeHttp({
      port: requestedPort, host: options.httpHost, metrics,
      health: () => ({ status: link.state, connected: link.state === 'connected' }),
    });
    httpPort = http.port;
    httpServer = http.server;
  }

  // The board's programs reach the chat through it; without it the agent still runs its jobs.
  const chatSocket = await ChatSocketServer.start({ path: join(options.dataDir, CHAT_SOCKET_FILE), chat, logger: chatLogger })
    .catch((err: unknown) => {
      chatLogger.failure(err, {}, 'warn');
      return undefined;
    });

  // A model that moves between the chip and the CPU is told at once, not at the next heartbeat.
  backend?.onRouteChange?.(() => link.heartbeatNow());
  link.start();
  logger.info('STATE', 'node agent started', { name, slots, orchestrator, backend: backend?.name ?? 'none', models: store.list().length });

  return {
    nodeId,
    fatal,
    httpPort,
    get connected() {
      return link.state === 'connected';
    },
    async close() {
      stopResending();
      await chatSocket?.close();
      await link.close();
      // After the link: nothing more arrives; every pending post goes to disk, the cursors are written.
      await chat.close();
      jobRunner.cancelAll('node shutting down');
      await selected?.close();
      await outbox.persistAll();
      // Last: the records of the shutdown itself are in the spool for the next start.
      await logShipper?.close();
      eventLoopDelay.disable();
      await new Promise((resolve) => (httpServer ? httpServer.close(resolve) : resolve(undefined)));
      logger.info('STATE', 'node agent stopped');
    },
  };

  /** Log shipping is not the node's work: a spool that cannot be opened is logged, and the agent runs without it. */
  async function openLogShipper(tap: LogTap): Promise<LogShipper | undefined> {
    const dir = join(options.dataDir, 'log-spool');
    try {
      return await LogShipper.open({
        dir, tap, nodeId, logger, spoolMaxBytes: options.logSpoolMaxBytes,
        link: { send: (logs) => link.send({ logs }) },
      });
    } catch (err) {
      logger.failure(new ConclaveError('NODE-STATE-721', { cause: err, data: { dir } }), {}, 'warn');
      return undefined;
    }
  }
}
