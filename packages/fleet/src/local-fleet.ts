import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { acquireDataDirLock, spawnChild, type LogTap, type Logger, type ReadinessOf, type ReadinessRole, type SpawnedChild } from '@conclave/common';
import { MODEL_SERVER_MAIN, modelServerJoinEnv, modelServerStartArgv } from '@conclave/model-server';
import { NODE_AGENT_MAIN, nodeAgentJoinEnv, nodeAgentStartArgv } from '@conclave/node-agent';
import { controlCallsFromClient, startOrchestrator } from '@conclave/orchestrator';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import { createControlClient, tensorFromTypedArray, typedArrayFromTensor } from '@conclave/protocol';
import { DEMO_MAX_ROWS, DEMO_MODEL_NAME, buildDemoModel, demoExpected, demoInput } from './demo-model.js';

/** How long a node agent may take to start and connect (it starts its CPU workers first). */
const NODE_READY_TIMEOUT_MS = 40_000;
/** How long the model server may take to load and warm up its model and join: ~7 s on 2 cores. */
const MODEL_SERVER_READY_TIMEOUT_MS = 60_000;

export interface LocalFleetOptions {
  /** Everything the fleet keeps: Redis data, orchestrator models, each node's data dir. */
  dataDir: string;
  nodes: number;
  slots: number;
  grpcPort: number;
  httpPort: number;
  demoJobs: number;
  /** The text model server's HTTP port; -1 leaves it out of the fleet. */
  modelServerPort: number;
  logger: Logger;
  /** The tap `logger` was made with: the orchestrator stores its own records from it (`orchestrator logs`). */
  logTap?: LogTap;
  /** Where node agents' log lines and demo results go. */
  print: (line: string) => void;
}

export interface LocalFleet {
  orchestrator: OrchestratorHandle;
  /** The model server's URL; undefined when the fleet runs without it. */
  modelServerUrl?: string;
  close(): Promise<void>;
}

/**
 * One machine's whole Conclave: embedded redis-server (started by the orchestrator), the
 * orchestrator, node agents and the text model server as child processes with their own data
 * dirs (each waited for by its readiness line), and a demo model built by the project itself
 * (y = x·W + b, 4 → 3). Runs a few demo jobs and checks each output against the model's JS
 * reference.
 */
export async function startLocalFleet(o: LocalFleetOptions): Promise<LocalFleet> {
  await mkdir(o.dataDir, { recursive: true });
  // The orchestrator's own data dir too: `orchestrator start --data-dir .conclave/local/orchestrator`
  // beside a running fleet is refused, naming the fleet.
  const orchestratorDir = join(o.dataDir, 'orchestrator');
  const lock = await acquireDataDirLock({
    dir: orchestratorDir, role: 'local fleet', errorCode: 'ORCH-STATE-704', unusableCode: 'ORCH-STATE-706', logger: o.logger,
  });
  let orchestrator: OrchestratorHandle;
  try {
    orchestrator = await startOrchestrator({
      dataDir: orchestratorDir, grpcHost: '127.0.0.1', grpcPort: o.grpcPort, httpPort: o.httpPort, logger: o.logger, ...(o.logTap ? { logTap: o.logTap } : {}),
    });
  } catch (err) {
    await lock.release();
    throw err;
  }
  const children: SpawnedChild[] = [];
  // In order: the nodes first (their sessions end cleanly), then the orchestrator and its Redis.
  const close = async () => {
    await Promise.all(children.map((c) => c.stop()));
    await orchestrator.close();
    await lock.release();
  };
  try {
    for (let i = 1; i <= o.nodes; i++) children.push(await startNodeAgent(orchestrator, o, i));
    let modelServerUrl: string | undefined;
    if (o.modelServerPort >= 0) {
      const modelServer = await startModelServer(orchestrator, o);
      children.push(modelServer.child);
      modelServerUrl = modelServer.url;
    }
    await runDemoJobs(orchestrator, o);
    return { orchestrator, modelServerUrl, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function hasJoined(dataDir: string): Promise<boolean> {
  return access(join(dataDir, 'join-state.json')).then(() => true, () => false);
}

/** The child's readiness line; a child that is not ready in time is stopped, and the error names it. */
async function readyOrStopped<R extends ReadinessRole>(child: SpawnedChild, role: R, what: string, timeoutMs: number): Promise<ReadinessOf<R>> {
  try {
    return await child.ready(role, timeoutMs);
  } catch (err) {
    await child.stop();
    throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/**
 * Spawns `node-agent start` for a fleet member. The join string goes in the environment
 * (CONCLAVE_JOIN), not in argv, where every user of the machine can read it in `ps`.
 */
export function spawnFleetNodeAgent(o: {
  orchestrator: string; dataDir: string; name: string; slots?: number | undefined; join?: string | undefined; print?: ((line: string) => void) | undefined;
}): SpawnedChild {
  return spawnChild(
    NODE_AGENT_MAIN,
    nodeAgentStartArgv({ orchestrator: o.orchestrator, dataDir: o.dataDir, httpPort: 0, name: o.name, ...(o.slots !== undefined ? { slots: o.slots } : {}) }),
    { env: nodeAgentJoinEnv(o.join), ...(o.print ? { onOutputLine: o.print } : {}) },
  );
}

/** A node agent as a child process with its own data dir; resolves once it is connected. */
async function startNodeAgent(orchestrator: OrchestratorHandle, o: LocalFleetOptions, i: number): Promise<SpawnedChild> {
  const dataDir = join(o.dataDir, `node-${i}`);
  const name = `local-${i}`;
  // The first run enrolls with a join token; later runs reconnect by key alone.
  const joinString = (await hasJoined(dataDir)) ? undefined : await orchestrator.createJoinString();
  const child = spawnFleetNodeAgent({ orchestrator: orchestrator.address, dataDir, name, slots: o.slots, join: joinString, print: o.print });
  await readyOrStopped(child, 'node-agent', `node agent ${name}`, NODE_READY_TIMEOUT_MS);
  return child;
}

/**
 * The text model server (embedded demo model), joined to the fleet as a text-generation node;
 * resolves once its model is loaded and it is connected.
 */
async function startModelServer(orchestrator: OrchestratorHandle, o: LocalFleetOptions): Promise<{ child: SpawnedChild; url: string }> {
  const dataDir = join(o.dataDir, 'model-server');
  const joinString = (await hasJoined(dataDir)) ? undefined : await orchestrator.createJoinString();
  const child = spawnChild(
    MODEL_SERVER_MAIN,
    modelServerStartArgv({ port: o.modelServerPort, orchestrator: orchestrator.address, dataDir }),
    // In the environment, not the argv: `ps` shows every user the argv.
    { env: modelServerJoinEnv(joinString), onOutputLine: o.print },
  );
  const { url } = await readyOrStopped(child, 'model-server', 'model server', MODEL_SERVER_READY_TIMEOUT_MS);
  return { child, url };
}

async function* oneChunk(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/** Demo jobs through the Control API, as a user's would go; each output checked against the reference. */
async function runDemoJobs(orchestrator: OrchestratorHandle, o: LocalFleetOptions): Promise<void> {
  const { address, operatorToken } = orchestrator;
  const control = controlCallsFromClient(createControlClient(address, { operatorToken }), { address });
  try {
    const bytes = buildDemoModel();
    const info = await control.addModel({ name: DEMO_MODEL_NAME, size: bytes.byteLength }, oneChunk(bytes));
    o.print(`demo model "${DEMO_MODEL_NAME}" added (built by the project: y = x·W + b, sha256 ${info.sha256.slice(0, 12)}…)`);
    const names = new Map((await control.listNodes()).map((n) => [n.id, n.name]));
    const jobs = Array.from({ length: o.demoJobs }, async (_, i) => {
      const x = demoInput(1 + (i % DEMO_MAX_ROWS));
      const submitted = await control.submitJob({ infer: { model: DEMO_MODEL_NAME, inputs: { x: tensorFromTypedArray('float32', x.dims, x.data) } } });
      const job = await control.watchJob(submitted.id);
      const y = job.outputs.y;
      const got = y ? [...typedArrayFromTensor(y)] : [];
      const exact = JSON.stringify(got) === JSON.stringify([...demoExpected(x.data)]);
      o.print(
        `demo job ${job.id.slice(0, 8)} ${job.state.replace('JOB_STATE_', '').toLowerCase()} on ${names.get(job.node) ?? job.node}: ` +
        `x=${JSON.stringify([...x.data])} → y=${JSON.stringify(got)} ${exact ? '(exact)' : `(MISMATCH ${job.error?.code ?? ''} ${job.error?.message ?? ''})`}`,
      );
    });
    await Promise.all(jobs);
    if (o.modelServerPort >= 0) {
      const submitted = await control.submitJob({ generate: { prompt: 'the fleet', maxTokens: 12 } });
      const done = await control.watchJob(submitted.id);
      o.print(
        `demo generate job ${done.id.slice(0, 8)} ${done.state.replace('JOB_STATE_', '').toLowerCase()} on ` +
        `${names.get(done.node) ?? 'the model server'}: "the fleet" → ${JSON.stringify(done.generated?.text ?? done.error?.message ?? '')} (demo model)`,
      );
    }
  } finally {
    control.close();
  }
}
