/**
 * `pnpm bench inference`: one model of ≥ 5 ms run three ways in the same process and the
 * same run: `session.run` in process (the baseline), the node's `CpuBackend` (the worker-thread
 * hop alone), and a full job through an orchestrator and one node agent. The figures that
 * matter are ratios to the baseline, and the main thread's event-loop lag while the model runs.
 *
 *   node packages/node-agent/dist/bench/inference-bench.js [--runs 100] [--warmup 10] [--block 10]
 *     [--lag-runs 50] [--size 512] [--layers 16] [--batch 128]
 */
import { createHash } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';
import { EXIT_FAILURE, EXIT_OK, nullLogger, percentile } from '@conclave/common';
import type { Job__Output, ModelInfo__Output, NodeInfo__Output, TensorData, TensorSpec, WireTensor } from '@conclave/protocol';
import { CpuBackend } from '../cpu-backend.js';

const TARGET_RATIO = 1.05;
const TARGET_MIN_MODEL_MS = 5;
const TARGET_MAX_LAG_MS = 10;
const MODEL_NAME = 'bench-heavy';
/** The event-loop delay histogram's timer, ms. Its values include this period. */
const LAG_RESOLUTION_MS = 1;

const BenchOptionsSchema = z.object({
  /** Measured runs per arm. */
  runs: z.coerce.number().int().positive().default(100),
  /** Unmeasured runs per arm first (JIT, session warm-up, connections, model fetch on the node). */
  warmup: z.coerce.number().int().nonnegative().default(10),
  /** Consecutive runs of one arm before the next arm's turn; the order rotates every cycle. */
  block: z.coerce.number().int().positive().default(10),
  /** Runs per arm with the event-loop delay histogram on (a separate pass after the timed runs). 0 skips. */
  lagRuns: z.coerce.number().int().nonnegative().default(50),
  /** heavyModel's width, chain length and batch: 2·batch·size²·layers flops per run. */
  size: z.coerce.number().int().positive().default(512),
  layers: z.coerce.number().int().positive().default(16),
  batch: z.coerce.number().int().positive().default(128),
});
type BenchOptions = z.infer<typeof BenchOptionsSchema>;

/** An orchestrator handle, passed back to the harness as is. */
interface OrchestratorHandle {
  address: string;
  operatorToken: string;
  close(): Promise<void>;
}

interface HostTensor {
  readonly dtype: string;
  readonly dims: readonly number[];
  readonly data: TensorData;
}

/** The part of `@conclave/testing` this bench uses. */
interface TestingHarness {
  startRedis(): Promise<{ url: string; stop(): Promise<void> }>;
  startTestOrchestrator(options: { redisUrl: string; httpPort?: number }): Promise<OrchestratorHandle>;
  startTestNode(options: { orchestrator: OrchestratorHandle; slots: number; name: string }): Promise<{ close(): Promise<void> }>;
  createTestControl(target: OrchestratorHandle): {
    addModel(name: string, bytes: Uint8Array): Promise<ModelInfo__Output>;
    listNodes(): Promise<NodeInfo__Output[]>;
    run(model: string, inputs: Record<string, WireTensor>): Promise<Job__Output>;
    close(): void;
  };
  heavyModel(options: { size: number; layers: number; batch: number }): {
    name: string;
    bytes: Uint8Array;
    inputs: readonly TensorSpec[];
    outputs: readonly TensorSpec[];
    expected(inputs: Readonly<Record<string, HostTensor>>): Record<string, HostTensor>;
    sampleInputs(batch?: number): Record<string, HostTensor>;
  };
  writeModel(dir: string, name: string, model: Uint8Array): Promise<string>;
  tempDir(prefix?: string): Promise<{ path: string; remove(): Promise<void> }>;
  waitUntil<T>(check: () => T | Promise<T>, options?: { timeoutMs?: number; what?: string }): Promise<NonNullable<T>>;
}

// @conclave/testing depends on this package, so a static import (even `import type`) would
// make the tsc -b build order cyclic: on a clean build this package compiles before testing
// has a dist. Loaded at run time instead, when `pnpm build` has built both.
const TESTING_PACKAGE: string = '@conclave/testing';

/** One run as an arm sees it: wall time from the caller, and the time inside `session.run` when reported. */
interface Run {
  wallMs: number;
  runMs?: number;
}

interface Arm {
  name: string;
  /** Runs the model once; rejects on a wrong result. */
  runOne(): Promise<Run>;
  /** Checks one result bit for bit against the model's JS reference. */
  check(): Promise<void>;
}

interface Lag {
  p99Ms: number;
  maxMs: number;
  /** How long the pass took. */
  elapsedMs: number;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const testing = (await import(TESTING_PACKAGE)) as TestingHarness;
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    const model = testing.heavyModel({ size: options.size, layers: options.layers, batch: options.batch });
    const dir = await testing.tempDir('conclave-bench-inference-');
    cleanups.push(() => dir.remove());
    const path = await testing.writeModel(dir.path, model.name, model.bytes);
    const host = model.sampleInputs(options.batch);
    const expected = model.expected(host);
    const wire: Record<string, WireTensor> = {};
    for (const [name, t] of Object.entries(host)) wire[name] = { dtype: t.dtype, dims: [...t.dims], raw: bytesOf(t.data) };
    const expectedBytes = new Map(Object.entries(expected).map(([name, t]) => [name, bytesOf(t.data)]));
    const sameAsExpected = (what: string, outputs: Record<string, Uint8Array>) => {
      for (const [name, want] of expectedBytes) {
        const got = outputs[name];
        if (!got || Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), want) !== 0) {
          throw new Error(`${what}: output ${name} differs from the model's reference`);
        }
      }
    };

    // Baseline: the worker's own session options (inference-worker.ts), in this thread.
    const session = await ort.InferenceSession.create(path, {
      intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
    cleanups.push(() => session.release());
    const feeds = () => {
      const out: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(host)) out[name] = new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as ort.Tensor.DataType, [...t.dims]);
      return out;
    };
    const baseline: Arm = {
      name: 'session.run in process (baseline)',
      async runOne() {
        const started = performance.now();
        await session.run(feeds());
        return { wallMs: performance.now() - started };
      },
      async check() {
        const results = await session.run(feeds());
        sameAsExpected(this.name, Object.fromEntries(Object.entries(results).map(([n, t]) => [n, dataBytes(t.data as TensorData)])));
      },
    };

    // (a) The node's backend alone: copy into a transfer buffer, postMessage, run, transfer back.
    const backend = await CpuBackend.create({ workers: 1, logger: nullLogger });
    cleanups.push(() => backend.dispose());
    const sha256 = createHash('sha256').update(model.bytes).digest('hex');
    await backend.load({ sha256, path, inputs: model.inputs, outputs: model.outputs });
    const backendArm: Arm = {
      name: '(a) CpuBackend, 1 worker thread',
      async runOne() {
        const started = performance.now();
        const { runMs } = await backend.run(sha256, wire);
        return { wallMs: performance.now() - started, runMs };
      },
      async check() {
        const { outputs } = await backend.run(sha256, wire);
        sameAsExpected(this.name, Object.fromEntries(Object.entries(outputs).map(([n, t]) => [n, t.raw])));
      },
    };

    // (b) A job end to end: Control API → orchestrator → Redis queue → sealed session → node → back.
    const redis = await testing.startRedis();
    cleanups.push(() => redis.stop());
    const orchestrator = await testing.startTestOrchestrator({ redisUrl: redis.url, httpPort: -1 });
    cleanups.push(() => orchestrator.close());
    const node = await testing.startTestNode({ orchestrator, slots: 1, name: 'bench-inference' });
    cleanups.push(() => node.close());
    const control = testing.createTestControl(orchestrator);
    cleanups.push(async () => control.close());
    await testing.waitUntil(
      async () => (await control.listNodes()).some((n) => n.state === 'connected'),
      { what: 'a connected node' },
    );
    await control.addModel(MODEL_NAME, model.bytes);
    const runJob = async (): Promise<Job__Output> => {
      const job = await control.run(MODEL_NAME, wire);
      if (job.state !== 'JOB_STATE_COMPLETED') {
        throw new Error(`job ${job.id} ended ${job.state}: ${job.error?.code ?? ''} ${job.error?.message ?? ''}`);
      }
      return job;
    };
    const jobArm: Arm = {
      name: '(b) job: orchestrator + 1 node',
      async runOne() {
        const started = performance.now();
        const job = await runJob();
        return { wallMs: performance.now() - started, runMs: job.runMs };
      },
      async check() {
        const job = await runJob();
        sameAsExpected(this.name, Object.fromEntries(Object.entries(job.outputs).map(([n, t]) => [n, t.raw])));
      },
    };

    const arms = [baseline, backendArm, jobArm];
    for (const arm of arms) {
      await arm.check();
      for (let i = 0; i < options.warmup; i++) await arm.runOne();
    }
    const samples = new Map<Arm, Run[]>(arms.map((arm) => [arm, []]));
    for (let cycle = 0; arms.some((arm) => (samples.get(arm)?.length ?? 0) < options.runs); cycle++) {
      const order = arms.map((_, i) => arms[(i + cycle) % arms.length]!);
      for (const arm of order) {
        const runs = samples.get(arm)!;
        const n = Math.min(options.block, options.runs - runs.length);
        for (let i = 0; i < n; i++) runs.push(await arm.runOne());
      }
    }
    const lags = new Map<Arm, Lag>();
    const controls: Array<{ name: string; lag: Lag }> = [];
    if (options.lagRuns > 0) {
      for (const arm of arms) lags.set(arm, await lagDuring(arm, options.lagRuns));
      // Controls, each for as long as the (a) pass took: the same timer with nothing running,
      // then with a worker thread that only spins. On a shared machine the OS alone delays a
      // timer by several ms now and then, more so when a busy thread holds one of two cores.
      const ms = lags.get(backendArm)?.elapsedMs ?? 1000;
      controls.push({ name: 'control: idle loop', lag: await idleLagFor(ms) });
      controls.push({ name: 'control: a worker thread spinning, no onnxruntime', lag: await spinLagFor(ms) });
    }
    printReport(options, model.name, arms, samples, lags, controls);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err: unknown) => console.error('cleanup failed:', err));
  }
}

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string' }, warmup: { type: 'string' }, block: { type: 'string' }, 'lag-runs': { type: 'string' },
      size: { type: 'string' }, layers: { type: 'string' }, batch: { type: 'string' },
    },
  });
  const { 'lag-runs': lagRuns, ...rest } = values;
  return BenchOptionsSchema.parse({ ...rest, lagRuns });
}

/** The tensor's bytes as a Buffer view (no copy). */
function bytesOf(data: TensorData): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function dataBytes(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The main thread's event-loop delay while `arm` runs `runs` times back to back: a 1 ms timer's
 * intervals (so an idle loop reads ≈ 1 ms). A separate pass, so that the timer's own CPU does not
 * touch the timed runs.
 */
async function lagDuring(arm: Arm, runs: number): Promise<Lag> {
  return lagWhile(async () => {
    for (let i = 0; i < runs; i++) await arm.runOne();
  });
}

/** The same histogram over `ms` of an idle loop: the machine's own share of the lag. */
function idleLagFor(ms: number): Promise<Lag> {
  return lagWhile(() => new Promise((resolve) => setTimeout(resolve, ms)));
}

/** The same histogram while another thread keeps a core busy for `ms`, with none of the backend's code. */
function spinLagFor(ms: number): Promise<Lag> {
  return lagWhile(() => new Promise((resolve, reject) => {
    const spinner = new Worker(`const end = Date.now() + ${Math.ceil(ms)}; while (Date.now() < end) {}`, { eval: true });
    spinner.once('error', reject);
    spinner.once('exit', resolve);
  }));
}

async function lagWhile(work: () => Promise<unknown>): Promise<Lag> {
  const histogram = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  const started = performance.now();
  histogram.enable();
  try {
    await work();
  } finally {
    histogram.disable();
  }
  return { p99Ms: histogram.percentile(99) / 1e6, maxMs: histogram.max / 1e6, elapsedMs: performance.now() - started };
}

interface Figures {
  p50Ms: number;
  p99Ms: number;
  runP50Ms: number | undefined;
}

function figures(runs: Run[]): Figures {
  const walls = runs.map((r) => r.wallMs).sort((a, b) => a - b);
  const inside = runs.flatMap((r) => (r.runMs === undefined ? [] : [r.runMs])).sort((a, b) => a - b);
  return {
    p50Ms: percentile(walls, 0.5),
    p99Ms: percentile(walls, 0.99),
    runP50Ms: inside.length ? percentile(inside, 0.5) : undefined,
  };
}

function printReport(
  options: BenchOptions, modelName: string, arms: Arm[], samples: Map<Arm, Run[]>, lags: Map<Arm, Lag>,
  controls: Array<{ name: string; lag: Lag }>,
): void {
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const ms = (value: number | undefined) => (value === undefined ? '—' : value.toFixed(2));
  const ratio = (value: number | undefined, base: number) => (value === undefined ? '—' : (value / base).toFixed(3));
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  const [baselineArm, backendArm, jobArm] = arms as [Arm, Arm, Arm];
  const base = figures(samples.get(baselineArm) ?? []);
  const lines = [
    `inference: ${modelName} (batch ${options.batch}, ${((2 * options.batch * options.size ** 2 * options.layers) / 1e9).toFixed(2)} GFLOP/run), `
      + `${options.runs} runs per arm in blocks of ${options.block}, ${options.warmup} warm-up; onnxruntime 1 intra-op thread; `
      + `node ${process.version}, ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    '',
    row(['arm', 'p50 ms', 'p99 ms', 'p50 ÷ baseline', 'p99 ÷ baseline', 'session.run p50 ms (runMs)', 'runMs ÷ baseline', 'lag p99 ms', 'lag max ms']),
    row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']),
  ];
  for (const arm of arms) {
    const f = figures(samples.get(arm) ?? []);
    const lag = lags.get(arm);
    lines.push(row([
      arm.name, ms(f.p50Ms), ms(f.p99Ms), ratio(f.p50Ms, base.p50Ms), ratio(f.p99Ms, base.p99Ms),
      ms(f.runP50Ms), ratio(f.runP50Ms, base.p50Ms), ms(lag?.p99Ms), ms(lag?.maxMs),
    ]));
  }
  for (const { name, lag } of controls) lines.push(row([name, '—', '—', '—', '—', '—', '—', ms(lag.p99Ms), ms(lag.maxMs)]));
  const backend = figures(samples.get(backendArm) ?? []);
  const job = figures(samples.get(jobArm) ?? []);
  const backendRatio = backend.p50Ms / base.p50Ms;
  const jobRunRatio = (job.runP50Ms ?? Number.NaN) / base.p50Ms;
  const backendLag = lags.get(backendArm);
  lines.push(
    '',
    row(['check', 'measured', 'target', 'verdict']),
    row(['---', '---:', '---:', '---']),
    row(['model time in process (p50)', `${ms(base.p50Ms)} ms`, `≥ ${TARGET_MIN_MODEL_MS} ms`, verdict(base.p50Ms >= TARGET_MIN_MODEL_MS)]),
    row(['(a) CpuBackend ÷ in process (p50)', backendRatio.toFixed(3), `≤ ${TARGET_RATIO}`, verdict(backendRatio <= TARGET_RATIO)]),
    row(['(b) job runMs on the node ÷ in process (p50)', jobRunRatio.toFixed(3), `≤ ${TARGET_RATIO}`, verdict(jobRunRatio <= TARGET_RATIO)]),
  );
  if (backendLag) {
    const control = controls.length ? ` (controls: ${controls.map((c) => ms(c.lag.maxMs)).join(' / ')} ms)` : '';
    lines.push(row(['main-thread lag max during (a)', `${ms(backendLag.maxMs)} ms${control}`, `≤ ${TARGET_MAX_LAG_MS} ms`, verdict(backendLag.maxMs <= TARGET_MAX_LAG_MS)]));
  }
  lines.push(
    '',
    `worker-thread hop (a), p50 of wall − runMs: ${ms(median(samples.get(backendArm) ?? []))} ms; `
      + `job end to end ÷ in process: ${(job.p50Ms / base.p50Ms).toFixed(2)}× (no target: it includes the Control API, Redis, `
      + `the sealed node session and the tensors' trips both ways)`,
  );
  if (lags.size) {
    lines.push(`lag: the main thread's event-loop delay, 1 ms timer (an idle loop reads ≈ ${LAG_RESOLUTION_MS} ms), `
      + `${options.lagRuns} runs per arm back to back; (b) shares this thread with the orchestrator and the client; `
      + 'the controls last as long as the (a) pass');
  }
  console.log(lines.join('\n'));
}

/** Median of wall − runMs: the cost around `session.run`. */
function median(runs: Run[]): number {
  const overhead = runs.flatMap((r) => (r.runMs === undefined ? [] : [r.wallMs - r.runMs])).sort((a, b) => a - b);
  return percentile(overhead, 0.5);
}

main().then(
  () => process.exit(EXIT_OK),
  (err: unknown) => {
    console.error(err);
    process.exit(EXIT_FAILURE);
  },
);
