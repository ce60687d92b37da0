/**
 * `pnpm bench dispatch`: no-op jobs through the orchestrator and N in-process node agents,
 * against a raw BullMQ no-op worker on the same Redis in the same run. The figure that
 * matters is the throughput ratio; absolute numbers on shared machines are noise.
 *
 *   node packages/orchestrator/dist/bench/dispatch-bench.js [--jobs 2000] [--nodes 2] [--slots 4]
 *     [--concurrency 32] [--warmup 200] [--rounds 1] [--serial-jobs 200] [--node-processes]
 *
 * With --node-processes the nodes are `node-agent` CLI children, as in production, and the
 * report splits CPU per job between this process (client + orchestrator), the node processes
 * and Redis.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { EXIT_FAILURE, EXIT_OK, nullLogger, percentile, processCpuNanos } from '@conclave/common';
import { createControlClient } from '@conclave/protocol';
import type { ControlClient, Job__Output, ModelInfo__Output, NodeInfo__Output, WireTensor } from '@conclave/protocol';
import { startOrchestrator } from '../orchestrator.js';
import type { OrchestratorHandle } from '../orchestrator.js';

const TARGET_RATIO = 0.5;
const TARGET_P50_MS = 5;
const TARGET_P99_MS = 20;
const MODEL_NAME = 'bench-identity';
const RAW_QUEUE_NAME = 'bench-raw-noop';
const RAW_PREFIX = 'bench';

const BenchOptionsSchema = z.object({
  /** Measured jobs per arm and round. */
  jobs: z.coerce.number().int().positive().default(2000),
  nodes: z.coerce.number().int().positive().default(2),
  /** Slots per node; the raw worker's concurrency is nodes × slots. */
  slots: z.coerce.number().int().positive().default(4),
  /** Jobs in flight from the client side, the same for both arms. */
  concurrency: z.coerce.number().int().positive().default(32),
  /** Unmeasured jobs per arm before its first round (JIT, connections, model load on every node). */
  warmup: z.coerce.number().int().nonnegative().default(200),
  /** Rounds alternate which arm goes first; figures pool all rounds. */
  rounds: z.coerce.number().int().positive().default(1),
  /** Jobs per arm with one in flight: latency without client-side queueing. 0 skips. */
  serialJobs: z.coerce.number().int().nonnegative().default(200),
  /** One arm alone, e.g. under --cpu-prof; the ratio needs both. */
  arm: z.enum(['both', 'raw', 'orchestrator']).default('both'),
  /** Nodes as `node-agent` child processes instead of in this process; adds per-process CPU. */
  nodeProcesses: z.boolean().default(false),
});
type BenchOptions = z.infer<typeof BenchOptionsSchema>;

/** The part of `@conclave/testing` this bench uses. */
interface TestingHarness {
  startRedis(): Promise<{ url: string; stop(): Promise<void> }>;
  startTestNode(options: { orchestrator: OrchestratorHandle; slots: number; name: string }): Promise<{ close(): Promise<void> }>;
  spawnNodeAgent(options: { orchestrator: OrchestratorHandle; dataDir: string; name: string; slots: number }): Promise<{
    process: { pid?: number | undefined };
    lines: string[];
    stop(graceMs?: number): Promise<number | null>;
  }>;
  createTestControl(target: OrchestratorHandle): {
    addModel(name: string, bytes: Uint8Array): Promise<ModelInfo__Output>;
    listNodes(): Promise<NodeInfo__Output[]>;
    close(): void;
  };
  identityModel(dtype: 'float32', dims: number[]): { bytes: Uint8Array };
  waitUntil<T>(check: () => T | Promise<T>, options?: { timeoutMs?: number; what?: string }): Promise<NonNullable<T>>;
}

// @conclave/testing depends on this package, so a static import (even `import type`) would
// make the tsc -b build order cyclic: on a clean build this package compiles before testing
// has a dist. Loaded at run time instead, when `pnpm build` has built both.
const TESTING_PACKAGE: string = '@conclave/testing';

interface Arm {
  name: string;
  runOne(): Promise<void>;
  /** Node child processes (with --node-processes), whose CPU each batch also reads. */
  nodePids?: number[];
}

/** One measured batch: wall time, per-job latency, and what it cost this process and Redis. */
interface Sample {
  elapsedMs: number;
  latenciesMs: number[];
  /** CPU of this whole process (client, orchestrator, nodes and their worker threads). */
  processCpuMicros: number;
  redisCpuMicros: number;
  /** Every command Redis ran, those inside Lua scripts included. */
  redisCommands: number;
  /** CPU of each node child process over the batch, in the order of Arm.nodePids (none in process). */
  nodeCpuMicros: number[];
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const testing = (await import(TESTING_PACKAGE)) as TestingHarness;
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    const redis = await testing.startRedis();
    cleanups.push(() => redis.stop());
    const probe = new Redis(redis.url, { maxRetriesPerRequest: null });
    cleanups.push(() => probe.quit());
    const arms: Arm[] = [];
    if (options.arm !== 'orchestrator') {
      const raw = await startRawArm(redis.url, options.nodes * options.slots);
      cleanups.push(raw.close);
      arms.push(raw.arm);
    }
    if (options.arm !== 'raw') arms.push(await startOrchestratorArm(testing, redis.url, options, cleanups));

    for (const arm of arms) await drive(arm, options.warmup, options.concurrency, probe);
    const samples = new Map<Arm, Sample[]>(arms.map((arm) => [arm, []]));
    for (let round = 0; round < options.rounds; round++) {
      for (const arm of round % 2 === 0 ? arms : [...arms].reverse()) {
        samples.get(arm)?.push(await drive(arm, options.jobs, options.concurrency, probe));
      }
    }
    const serial = new Map<Arm, Sample>();
    if (options.serialJobs > 0) for (const arm of arms) serial.set(arm, await drive(arm, options.serialJobs, 1, probe));
    printReport(options, arms, samples, serial);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err: unknown) => console.error('cleanup failed:', err));
  }
}

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      jobs: { type: 'string' }, nodes: { type: 'string' }, slots: { type: 'string' },
      concurrency: { type: 'string' }, warmup: { type: 'string' }, rounds: { type: 'string' },
      'serial-jobs': { type: 'string' }, arm: { type: 'string' }, 'node-processes': { type: 'boolean' },
    },
  });
  const { 'serial-jobs': serialJobs, 'node-processes': nodeProcesses, ...rest } = values;
  return BenchOptionsSchema.parse({ ...rest, serialJobs, nodeProcesses });
}

/** A BullMQ queue and a worker whose processor returns its input: the floor for any dispatch. */
async function startRawArm(redisUrl: string, concurrency: number): Promise<{ arm: Arm; close: () => Promise<void> }> {
  const url = new URL(redisUrl);
  const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
  const queue = new Queue(RAW_QUEUE_NAME, { connection, prefix: RAW_PREFIX });
  const events = new QueueEvents(RAW_QUEUE_NAME, { connection, prefix: RAW_PREFIX });
  const worker = new Worker(RAW_QUEUE_NAME, async (job) => job.data as unknown, { connection, prefix: RAW_PREFIX, concurrency });
  // Every waiting client adds a listener to both (waitUntilFinished), many at once by design.
  queue.setMaxListeners(0);
  events.setMaxListeners(0);
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady(), worker.waitUntilReady()]);
  const data = { x: { dtype: 'float32', dims: [1], raw: Buffer.from(new Float32Array([1]).buffer).toString('base64') } };
  return {
    arm: {
      name: 'raw BullMQ no-op worker',
      async runOne() {
        // Kept by count rather than removed at once: waitUntilFinished reads a job that
        // finished before its listener was ready, and a removed one reads as failed.
        const job = await queue.add('noop', data, { removeOnComplete: { count: 1000 }, removeOnFail: true });
        await job.waitUntilFinished(events);
      },
    },
    async close() {
      await worker.close();
      await events.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
    },
  };
}

async function startOrchestratorArm(
  testing: TestingHarness, redisUrl: string, options: BenchOptions, cleanups: Array<() => Promise<unknown>>,
): Promise<Arm> {
  const dataDir = await mkdtemp(join(tmpdir(), 'conclave-bench-orch-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const orchestrator: OrchestratorHandle = await startOrchestrator({
    redisUrl, grpcHost: '127.0.0.1', grpcPort: 0, httpPort: -1, dataDir, logger: nullLogger,
  });
  cleanups.push(() => orchestrator.close());
  const nodePids: number[] = [];
  for (let i = 0; i < options.nodes; i++) {
    if (options.nodeProcesses) {
      const nodeDir = await mkdtemp(join(tmpdir(), 'conclave-bench-node-'));
      cleanups.push(() => rm(nodeDir, { recursive: true, force: true }));
      const child = await testing.spawnNodeAgent({ orchestrator, dataDir: nodeDir, name: `bench-${i}`, slots: options.slots });
      cleanups.push(() => child.stop());
      if (!child.process.pid) throw new Error(`node bench-${i} has no pid`);
      nodePids.push(child.process.pid);
    } else {
      const node = await testing.startTestNode({ orchestrator, slots: options.slots, name: `bench-${i}` });
      cleanups.push(() => node.close());
    }
  }
  const control = testing.createTestControl(orchestrator);
  cleanups.push(async () => control.close());
  await testing.waitUntil(
    async () => (await control.listNodes()).filter((n) => n.state === 'connected').length === options.nodes,
    { what: `${options.nodes} connected nodes` },
  );
  await control.addModel(MODEL_NAME, testing.identityModel('float32', [1]).bytes);
  const client = createControlClient(orchestrator.address, { operatorToken: orchestrator.operatorToken });
  cleanups.push(async () => client.close());
  const inputs: Record<string, WireTensor> = {
    x: { dtype: 'float32', dims: [1], raw: Buffer.from(new Float32Array([1]).buffer) },
  };
  return {
    name: `orchestrator + ${options.nodes} ${options.nodeProcesses ? 'node processes' : 'nodes'}`,
    ...(options.nodeProcesses ? { nodePids } : {}),
    async runOne() {
      const job = await submitAndWatch(client, MODEL_NAME, inputs);
      if (job.state !== 'JOB_STATE_COMPLETED') {
        throw new Error(`job ${job.id} ended ${job.state}: ${job.error?.code ?? ''} ${job.error?.message ?? ''}`);
      }
    },
  };
}

const TERMINAL_STATES: ReadonlySet<string> = new Set(['JOB_STATE_COMPLETED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED']);

/**
 * SubmitJob, then WatchJob until a terminal state: what TestControl.run does, except that the
 * watch is not cancelled once the result is in. The server ends the stream itself, and each
 * cancel is a client RST_STREAM: Node's HTTP/2 server (nghttp2's rapid-reset guard, a bucket
 * of 1000 refilled at 33/s) answers a faster stream of them with GOAWAY(INTERNAL_ERROR),
 * which fails every call on the channel after about 1000 jobs.
 */
function submitAndWatch(client: ControlClient, model: string, inputs: Record<string, WireTensor>): Promise<Job__Output> {
  return new Promise((resolve, reject) => {
    client.SubmitJob({ infer: { model, inputs } }, (err, submitted) => {
      if (err || !submitted) return reject(err ?? new Error('SubmitJob returned nothing'));
      const stream = client.WatchJob({ id: submitted.id });
      let last: Job__Output | undefined;
      stream.on('data', (job: Job__Output) => {
        last = job;
        if (TERMINAL_STATES.has(job.state)) resolve(job);
      });
      stream.on('error', reject);
      stream.on('end', () => {
        if (!last || !TERMINAL_STATES.has(last.state)) reject(new Error(`watch of ${submitted.id} ended in state ${last?.state ?? 'unknown'}`));
      });
    });
  });
}

/** Runs `total` jobs with `concurrency` in flight; latency is submit → result seen by the client. */
async function drive(arm: Arm, total: number, concurrency: number, probe: Redis): Promise<Sample> {
  const latenciesMs: number[] = [];
  let issued = 0;
  const lane = async () => {
    while (issued < total) {
      issued++;
      const startedAt = performance.now();
      await arm.runOne();
      latenciesMs.push(performance.now() - startedAt);
    }
  };
  const nodePids = arm.nodePids ?? [];
  const redisBefore = await redisUsage(probe);
  const nodesBefore = nodePids.map((pid) => processCpuNanos(pid) / 1000);
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, lane));
  const elapsedMs = performance.now() - startedAt;
  const cpu = process.cpuUsage(cpuBefore);
  const nodesAfter = nodePids.map((pid) => processCpuNanos(pid) / 1000);
  const redisAfter = await redisUsage(probe);
  return {
    elapsedMs, latenciesMs, processCpuMicros: cpu.user + cpu.system,
    redisCpuMicros: redisAfter.cpuMicros - redisBefore.cpuMicros,
    redisCommands: redisAfter.commands - redisBefore.commands,
    nodeCpuMicros: nodesAfter.map((after, i) => after - (nodesBefore[i] ?? 0)),
  };
}

/** Redis's own CPU time and command count so far (INFO, which itself is left out). */
async function redisUsage(probe: Redis): Promise<{ cpuMicros: number; commands: number }> {
  const info = await probe.info('everything');
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  let commands = 0;
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (match[1] !== 'info') commands += Number(match[2]);
  }
  return { cpuMicros: (field('used_cpu_user') + field('used_cpu_sys')) * 1e6, commands };
}

interface Figures {
  jobsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  processCpuMicrosPerJob: number;
  redisCpuMicrosPerJob: number;
  redisCommandsPerJob: number;
  /** Per node child process; empty when the nodes run in this process. */
  nodeCpuMicrosPerJob: number[];
}

function figures(samples: Sample[]): Figures {
  const latencies = samples.flatMap((s) => s.latenciesMs).sort((a, b) => a - b);
  const sum = (pick: (s: Sample) => number) => samples.reduce((total, s) => total + pick(s), 0);
  const jobs = latencies.length;
  return {
    jobsPerSecond: (jobs / sum((s) => s.elapsedMs)) * 1000,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    processCpuMicrosPerJob: sum((s) => s.processCpuMicros) / jobs,
    redisCpuMicrosPerJob: sum((s) => s.redisCpuMicros) / jobs,
    redisCommandsPerJob: sum((s) => s.redisCommands) / jobs,
    nodeCpuMicrosPerJob: (samples[0]?.nodeCpuMicros ?? []).map((_, i) => sum((s) => s.nodeCpuMicros[i] ?? 0) / jobs),
  };
}

function printReport(options: BenchOptions, arms: Arm[], samples: Map<Arm, Sample[]>, serial: Map<Arm, Sample>): void {
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const ms = (value: number) => value.toFixed(2);
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  const lines = [
    `dispatch: ${options.jobs} no-op jobs × ${options.rounds} round(s) per arm, ${options.nodes} nodes × ${options.slots} slots, `
      + `${options.concurrency} in flight, ${options.warmup} warm-up; node ${process.version}, ${cpus().length} cores`,
    '',
    row(['arm', 'in flight', 'jobs/s', 'p50 ms', 'p99 ms', 'process CPU µs/job', 'Redis CPU µs/job', 'Redis cmds/job',
      ...(options.nodeProcesses ? ['node processes CPU µs/job', 'total CPU µs/job'] : [])]),
    row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', ...(options.nodeProcesses ? ['---:', '---:'] : [])]),
  ];
  // With --node-processes: the nodes' CPU summed, each node's in parentheses, and the total of
  // this process + nodes + Redis. The raw arm's worker runs in this process: no node column.
  const nodeCells = (f: Figures) => {
    if (!options.nodeProcesses) return [];
    const nodes = f.nodeCpuMicrosPerJob.reduce((a, b) => a + b, 0);
    const each = f.nodeCpuMicrosPerJob.map((v) => v.toFixed(0)).join(' + ');
    return [
      f.nodeCpuMicrosPerJob.length ? `${nodes.toFixed(0)} (${each})` : '—',
      (f.processCpuMicrosPerJob + nodes + f.redisCpuMicrosPerJob).toFixed(0),
    ];
  };
  const addRow = (arm: Arm, inFlight: number, f: Figures) => lines.push(row([
    arm.name, String(inFlight), f.jobsPerSecond.toFixed(0), ms(f.p50Ms), ms(f.p99Ms),
    f.processCpuMicrosPerJob.toFixed(0), f.redisCpuMicrosPerJob.toFixed(0), f.redisCommandsPerJob.toFixed(1),
    ...nodeCells(f),
  ]));
  for (const arm of arms) addRow(arm, options.concurrency, figures(samples.get(arm) ?? []));
  for (const arm of arms) {
    const sample = serial.get(arm);
    if (sample) addRow(arm, 1, figures([sample]));
  }
  const [rawArm, orchestratedArm] = arms;
  if (arms.length !== 2 || !rawArm || !orchestratedArm) {
    console.log(lines.join('\n'));
    return;
  }
  const raw = figures(samples.get(rawArm) ?? []);
  const orchestrated = figures(samples.get(orchestratedArm) ?? []);
  const ratio = orchestrated.jobsPerSecond / raw.jobsPerSecond;
  if (options.rounds > 1) {
    const perRound = (samples.get(orchestratedArm) ?? []).map((s, i) => {
      const rawRound = samples.get(rawArm)?.[i];
      return rawRound ? (figures([s]).jobsPerSecond / figures([rawRound]).jobsPerSecond).toFixed(2) : '?';
    });
    lines.push('', `throughput ratio per round: ${perRound.join(', ')}`);
  }
  lines.push(
    '',
    row(['check', 'measured', 'target', 'verdict']),
    row(['---', '---:', '---:', '---']),
    row(['throughput ÷ raw BullMQ', ratio.toFixed(2), `≥ ${TARGET_RATIO}`, verdict(ratio >= TARGET_RATIO)]),
    row([`p50 at ${options.concurrency} in flight`, `${ms(orchestrated.p50Ms)} ms`, `≤ ${TARGET_P50_MS} ms`, verdict(orchestrated.p50Ms <= TARGET_P50_MS)]),
    row([`p99 at ${options.concurrency} in flight`, `${ms(orchestrated.p99Ms)} ms`, `≤ ${TARGET_P99_MS} ms`, verdict(orchestrated.p99Ms <= TARGET_P99_MS)]),
  );
  const serialSample = serial.get(orchestratedArm);
  if (serialSample) {
    const f = figures([serialSample]);
    lines.push(
      row(['p50 at 1 in flight', `${ms(f.p50Ms)} ms`, `≤ ${TARGET_P50_MS} ms`, verdict(f.p50Ms <= TARGET_P50_MS)]),
      row(['p99 at 1 in flight', `${ms(f.p99Ms)} ms`, `≤ ${TARGET_P99_MS} ms`, verdict(f.p99Ms <= TARGET_P99_MS)]),
    );
  }
  lines.push(
    '',
    `CPU per job ÷ raw BullMQ: process ${(orchestrated.processCpuMicrosPerJob / raw.processCpuMicrosPerJob).toFixed(1)}×, `
      + `Redis ${(orchestrated.redisCpuMicrosPerJob / raw.redisCpuMicrosPerJob).toFixed(1)}×`,
  );
  if (options.nodeProcesses) {
    const nodes = orchestrated.nodeCpuMicrosPerJob.reduce((a, b) => a + b, 0);
    const total = orchestrated.processCpuMicrosPerJob + nodes + orchestrated.redisCpuMicrosPerJob;
    const rawTotal = raw.processCpuMicrosPerJob + raw.redisCpuMicrosPerJob;
    const share = (v: number) => `${((v / total) * 100).toFixed(0)}%`;
    lines.push(
      `orchestrator arm CPU per job at ${options.concurrency} in flight: ${total.toFixed(0)} µs = client + orchestrator `
        + `${share(orchestrated.processCpuMicrosPerJob)}, nodes ${share(nodes)}, Redis ${share(orchestrated.redisCpuMicrosPerJob)}; `
        + `total ÷ raw BullMQ ${(total / rawTotal).toFixed(1)}×`,
    );
  }
  console.log(lines.join('\n'));
}

main().then(
  () => process.exit(EXIT_OK),
  (err: unknown) => {
    console.error(err);
    process.exit(EXIT_FAILURE);
  },
);
