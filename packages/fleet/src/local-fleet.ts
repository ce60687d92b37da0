import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireDataDirLock, type Logger } from '@conclave/common';
import { startOrchestrator } from '@conclave/orchestrator';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import { tensorFromTypedArray, typedArrayFromTensor } from '@conclave/protocol';
import { affineModel, createTestControl, spawnNode, spawnNodeAgent } from '@conclave/testing';
import type { ChildHandle } from '@conclave/testing';

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
  /** Where node agents' log lines and demo results go. */
  print: (line: string) => void;
}

export interface LocalFleet {
  orchestrator: OrchestratorHandle;
  close(): Promise<void>;
}

export const DEMO_MODEL_NAME = 'demo-affine';

/**
 * One machine's whole Conclave: embedded redis-server (started by the orchestrator), the
 * orchestrator, node agents as child processes with their own data dirs, and a demo
 * model built by the project itself (y = x·W + b, 4 → 3). Runs a few demo jobs and checks
 * each output against the model's JS reference.
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
      dataDir: orchestratorDir, grpcHost: '127.0.0.1', grpcPort: o.grpcPort, httpPort: o.httpPort, logger: o.logger,
    });
  } catch (err) {
    await lock.release();
    throw err;
  }
  const nodes: ChildHandle[] = [];
  // In order: the nodes first (their sessions end cleanly), then the orchestrator and its Redis.
  const close = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await orchestrator.close();
    await lock.release();
  };
  try {
    for (let i = 1; i <= o.nodes; i++) {
      nodes.push(await spawnNodeAgent({
        orchestrator, dataDir: join(o.dataDir, `node-${i}`), name: `local-${i}`, slots: o.slots,
        onOutputLine: o.print,
      }));
    }
    if (o.modelServerPort >= 0) nodes.push(await startModelServer(orchestrator, o));
    await runDemoJobs(orchestrator, o);
    return { orchestrator, close };
  } catch (err) {
    await close();
    throw err;
  }
}

const MODEL_SERVER_MAIN = fileURLToPath(new URL('../../model-server/dist/main.js', import.meta.url));

/** The text model server (embedded demo model), joined to the fleet as a text-generation node. */
async function startModelServer(orchestrator: OrchestratorHandle, o: LocalFleetOptions): Promise<ChildHandle> {
  const dataDir = join(o.dataDir, 'model-server');
  // The first run enrolls with a join token; later runs reconnect by key alone.
  const joined = await access(join(dataDir, 'join-state.json')).then(() => true, () => false);
  const child = spawnNode(
    MODEL_SERVER_MAIN,
    [
      'start', '--port', String(o.modelServerPort), '--orchestrator', orchestrator.address, '--data-dir', dataDir,
      ...(joined ? [] : ['--join', await orchestrator.createJoinString()]),
    ],
    {},
    o.print,
  );
  await child.waitFor(/NODE-NET connected to orchestrator/, 60_000);
  return child;
}

async function runDemoJobs(orchestrator: OrchestratorHandle, o: LocalFleetOptions): Promise<void> {
  const control = createTestControl(orchestrator);
  try {
    const model = affineModel({ seed: 1 });
    const info = await control.addModel(DEMO_MODEL_NAME, model.bytes);
    o.print(`demo model "${DEMO_MODEL_NAME}" added (built by the project: y = x·W + b, sha256 ${info.sha256.slice(0, 12)}…)`);
    const names = new Map((await control.listNodes()).map((n) => [n.id, n.name]));
    const jobs = Array.from({ length: o.demoJobs }, async (_, i) => {
      const inputs = model.sampleInputs(1 + (i % 3));
      const x = inputs.x!;
      const job = await control.run(DEMO_MODEL_NAME, { x: tensorFromTypedArray('float32', x.dims, x.data) });
      const y = job.outputs.y;
      const got = y ? [...typedArrayFromTensor(y)] : [];
      const exact = JSON.stringify(got) === JSON.stringify([...model.expected(inputs).y!.data]);
      o.print(
        `demo job ${job.id.slice(0, 8)} ${job.state.replace('JOB_STATE_', '').toLowerCase()} on ${names.get(job.node) ?? job.node}: ` +
        `x=${JSON.stringify([...x.data])} → y=${JSON.stringify(got)} ${exact ? '(exact)' : `(MISMATCH ${job.error?.code ?? ''} ${job.error?.message ?? ''})`}`,
      );
    });
    await Promise.all(jobs);
    if (o.modelServerPort >= 0) {
      const job = await control.submit({ generate: { prompt: 'the fleet', maxTokens: 12 } });
      const done = await control.wait(job.id);
      o.print(
        `demo generate job ${done.id.slice(0, 8)} ${done.state.replace('JOB_STATE_', '').toLowerCase()} on ` +
        `${names.get(done.node) ?? 'the model server'}: "the fleet" → ${JSON.stringify(done.generated?.text ?? done.error?.message ?? '')} (demo model)`,
      );
    }
  } finally {
    control.close();
  }
}
