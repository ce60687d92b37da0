// `pnpm bench textgen` (or `node packages/model-server/dist/bench/textgen-bench.js`): the text model
// server against a bare generation loop in the same process, on the same demo model.
// Absolute figures on shared machines are noise; the ratios are the point.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { nullLogger, percentileOf, spawnChild, threadCpuNanos } from '@conclave/common';
import { DecoderSession } from '../decoder-session.js';
import { DEMO_MODEL_DIR, DEMO_MODEL_ID } from '../demo-model.js';
import { WorkerEngine } from '../engine.js';
import { GenerationLoop, type GenerationParams } from '../generation-loop.js';
import { MODEL_SERVER_MAIN, modelServerStartArgv } from '../launch.js';
import { SystemMemoryProbe } from '../memory-probe.js';
import { readModelConfig } from '../model-config.js';
import { inspectModelDir } from '../model-files.js';
import { TextCodec } from '../text-codec.js';

/** The server under test runs as its own process (`model-server start`), so its event loop is its own. */
interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** Where the preloaded lag monitor writes a snapshot on SIGUSR2. */
  lagFile: string;
  dir: string;
}

/**
 * Preloaded into the server process: a 1 ms event-loop delay histogram (prom-client's samples at
 * 10 ms, too coarse for this figure). The first SIGUSR2 starts it, the next writes a snapshot and
 * stops it: a 1 ms timer costs CPU, so it must not run during the throughput rounds.
 */
function lagMonitorSource(out: string): string {
  return [
    "import { monitorEventLoopDelay } from 'node:perf_hooks';",
    "import { writeFileSync } from 'node:fs';",
    'const h = monitorEventLoopDelay({ resolution: 1 });',
    'let on = false;',
    `process.on('SIGUSR2', () => { if (!on) { h.reset(); h.enable(); on = true; return; } h.disable(); on = false; writeFileSync(${JSON.stringify(out)}, JSON.stringify({ p99: h.percentile(99) / 1e6, max: h.max / 1e6 })); });`,
  ].join('\n');
}

const TOKENS = 1000;
const ROUNDS = 15;
const PROMPT = 'hello';
const TTFT_REQUESTS_PER_CLIENT = 24;
const LARGE_HIDDEN_PAD = 3000;


const median = (xs: number[]): number => percentileOf(xs, 0.5);

const fmt = (x: number, digits = 2): string => x.toFixed(digits);

interface Rate {
  /** tokens per wall-clock second */
  wall: number;
  /** tokens per CPU second of the generating process: what a busy shared machine distorts least */
  cpu: number;
  /** The share of that CPU spent on the process's main thread (the server's HTTP event loop). */
  mainCpuShare: number;
}

/** CPU seconds a process's threads used between two snapshots: all of them, and its main thread alone. */
function cpuBetween(pid: number, before: Map<number, number>, after: Map<number, number>): { total: number; main: number } {
  let total = 0;
  for (const [tid, ns] of after) total += ns - (before.get(tid) ?? 0);
  return { total: total / 1e9, main: ((after.get(pid) ?? 0) - (before.get(pid) ?? 0)) / 1e9 };
}

/**
 * Pause between measured runs. Each run leaves background work behind (V8's concurrent marking and
 * sweeping, a finalising mark-compact); on a 2-core machine that work, in the other process, took a
 * core from the next run. Without the pause the run after a bare loop (always an HTTP run) paid for
 * the loop's garbage.
 */
const SETTLE_MS = 100;

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, SETTLE_MS));

async function bareLoop(): Promise<{ run: () => Promise<Rate>; dispose: () => Promise<void> }> {
  const files = inspectModelDir(DEMO_MODEL_DIR);
  const codec = TextCodec.fromModelFiles(files);
  const decoder = await DecoderSession.create(files, readModelConfig(files), { intraOpThreads: 1 });
  const loop = new GenerationLoop(decoder, codec);
  const params: GenerationParams = { maxTokens: TOKENS, temperature: 0, topK: 0, topP: 1, seed: 0, stop: [], ignoreEos: true };
  const ids = codec.encodePrompt(PROMPT);
  return {
    run: async () => {
      const cpu0 = threadCpuNanos(process.pid);
      const t0 = performance.now();
      const out = await loop.generate(ids, params);
      const wall = performance.now() - t0;
      const cpu = cpuBetween(process.pid, cpu0, threadCpuNanos(process.pid));
      return { wall: out.tokenIds.length / (wall / 1000), cpu: out.tokenIds.length / cpu.total, mainCpuShare: cpu.main / cpu.total };
    },
    dispose: () => decoder.dispose(),
  };
}

async function httpRun(server: ServerProcess, stream: boolean): Promise<Rate> {
  const pid = server.child.pid as number;
  const cpu0 = threadCpuNanos(pid);
  const t0 = performance.now();
  const response = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: DEMO_MODEL_ID, prompt: PROMPT, max_tokens: TOKENS, ignore_eos: true, temperature: 0, stream }),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${text}`);
  const wall = TOKENS / ((performance.now() - t0) / 1000);
  const cpu = cpuBetween(pid, cpu0, threadCpuNanos(pid));
  return { wall, cpu: TOKENS / cpu.total, mainCpuShare: cpu.main / cpu.total };
}

async function ttft(server: ServerProcess, clients: number): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  const client = async (): Promise<void> => {
    for (let i = 0; i < TTFT_REQUESTS_PER_CLIENT; i++) {
      const t0 = performance.now();
      const response = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: 'hi' }], max_tokens: 64, ignore_eos: true, stream: true }),
      });
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let seen = '';
      let first = false;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        seen += decoder.decode(value, { stream: true });
        // The first chunk only carries the role; the first token is the first `content` with text.
        if (!first && /"content":"[^"]/.test(seen)) {
          first = true;
          samples.push(performance.now() - t0);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  return { p50: percentileOf(samples, 0.5), p99: percentileOf(samples, 0.99) };
}

async function loadMemory(): Promise<{ weightBytes: number; peakDelta: number; ratio: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'textgen-bench-'));
  try {
    // Built in a child process: the builder's garbage would otherwise hide the load in this RSS.
    const builder = fileURLToPath(new URL('../../scripts/build-demo-model.mjs', import.meta.url));
    execFileSync(process.execPath, [
      '--input-type=module',
      '-e',
      `import { writeDemoModel } from ${JSON.stringify(builder)}; writeDemoModel(${JSON.stringify(dir)}, { hiddenPad: ${LARGE_HIDDEN_PAD} });`,
    ]);
    const files = inspectModelDir(dir);
    const baseline = process.memoryUsage.rss();
    let peak = baseline;
    const timer = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, 2);
    const engine = await WorkerEngine.create({ files, logger: nullLogger, memoryProbe: new SystemMemoryProbe(), warmup: true });
    peak = Math.max(peak, process.memoryUsage.rss());
    clearInterval(timer);
    await engine.dispose();
    const peakDelta = peak - baseline;
    return { weightBytes: files.weightBytes, peakDelta, ratio: peakDelta / files.weightBytes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `--cpu-prof-dir DIR`: the server runs under `node --cpu-prof`, which writes one profile per
 * thread (main and engine worker) into DIR when it exits.
 */
function cpuProfDir(): string | undefined {
  const i = process.argv.indexOf('--cpu-prof-dir');
  return i < 0 ? undefined : process.argv[i + 1];
}

async function startServerProcess(profDir: string | undefined): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'textgen-lag-'));
  const lagFile = join(dir, 'lag.json');
  const preload = join(dir, 'lag-monitor.mjs');
  writeFileSync(preload, lagMonitorSource(lagFile));
  const prof = profDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir];
  const server = spawnChild(
    MODEL_SERVER_MAIN,
    modelServerStartArgv({ host: '127.0.0.1', port: 0, concurrency: 16, queueLimit: 256, logLevel: 'warn' }),
    {
      nodeArgs: [...prof, '--import', preload],
      // Its warnings as before; its stdout has only the readiness line.
      onOutputLine: (line, stream) => {
        if (stream === 'stderr') process.stderr.write(`${line}\n`);
      },
    },
  );
  // Ready means the demo model is loaded and warmed up, as /health answering 200 does.
  const { url } = await server.ready('model-server', 30_000);
  return { url, child: server.process, lagFile, dir };
}

/** Event-loop lag of the server process while `work` runs: the delay beyond the 1 ms timer, p99 and max, in ms. */
async function serverLag(server: ServerProcess, work: () => Promise<unknown>): Promise<{ p99: number; max: number }> {
  rmSync(server.lagFile, { force: true });
  server.child.kill('SIGUSR2');
  // Signals are asynchronous: give the monitor a moment to start before the work does.
  await new Promise((r) => setTimeout(r, 50));
  await work();
  server.child.kill('SIGUSR2');
  const deadline = Date.now() + 5_000;
  while (!existsSync(server.lagFile)) {
    if (Date.now() > deadline) throw new Error('no lag snapshot from the server');
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 5));
  const { p99, max } = JSON.parse(readFileSync(server.lagFile, 'utf8')) as { p99: number; max: number };
  return { p99: Math.max(0, p99 - 1), max: Math.max(0, max - 1) };
}

/**
 * The load-memory figure comes from a fresh process of its own (this script with `--load-memory`),
 * small and with nothing else allocating, as before. It used to run in the bench process itself
 * before the throughput rounds, so the bare loop then ran in a process that had just loaded and
 * freed 218 MiB, while the server's loop runs in a fresh worker: not like with like.
 */
function loadMemoryInChild(): { weightBytes: number; peakDelta: number; ratio: number } {
  const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--load-memory'], { encoding: 'utf8' });
  return JSON.parse(out) as { weightBytes: number; peakDelta: number; ratio: number };
}

async function main(): Promise<void> {
  const load = loadMemoryInChild();

  const profDir = cpuProfDir();
  const server = await startServerProcess(profDir);
  const bare = await bareLoop();
  // Warm both paths, then alternate them so drift on a shared machine hits both alike.
  await bare.run();
  await httpRun(server, false);
  const bareRates: number[] = [];
  const httpRates: number[] = [];
  const streamRates: number[] = [];
  const ratios: number[] = [];
  const streamRatios: number[] = [];
  const cpuRatios: number[] = [];
  const streamCpuRatios: number[] = [];
  const mainShares: number[] = [];
  const streamMainShares: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Each round pairs runs that are close in time; the median of per-round ratios resists drift.
    // Odd rounds swap the two HTTP runs, so neither always follows a bare run.
    await settle();
    const bareBefore = await bare.run();
    await settle();
    const first = await httpRun(server, r % 2 === 1);
    await settle();
    const second = await httpRun(server, r % 2 === 0);
    await settle();
    const bareAfter = await bare.run();
    const [http, stream] = r % 2 === 0 ? [first, second] : [second, first];
    const bareWall = (bareBefore.wall + bareAfter.wall) / 2;
    const bareCpu = (bareBefore.cpu + bareAfter.cpu) / 2;
    bareRates.push(bareBefore.wall, bareAfter.wall);
    httpRates.push(http.wall);
    streamRates.push(stream.wall);
    ratios.push(http.wall / bareWall);
    streamRatios.push(stream.wall / bareWall);
    cpuRatios.push(http.cpu / bareCpu);
    streamCpuRatios.push(stream.cpu / bareCpu);
    mainShares.push(http.mainCpuShare);
    streamMainShares.push(stream.mainCpuShare);
  }
  await bare.dispose();
  const lagDuringHttp = await serverLag(server, async () => {
    for (let i = 0; i < 3; i++) {
      await httpRun(server, false);
      await httpRun(server, true);
    }
  });
  const ttftRows: Array<[number, { p50: number; p99: number }]> = [];
  const lagDuringTtft = await serverLag(server, async () => {
    for (const clients of [1, 4, 16]) ttftRows.push([clients, await ttft(server, clients)]);
  });
  // Waits for the exit: --cpu-prof writes its profiles then.
  const exited = new Promise((r) => server.child.once('exit', r));
  server.child.kill('SIGTERM');
  await exited;
  rmSync(server.dir, { recursive: true, force: true });

  const bareTps = median(bareRates);
  const httpTps = median(httpRates);
  const streamTps = median(streamRates);
  const lines = [
    `textgen benchmark — demo model (${DEMO_MODEL_ID}), ${TOKENS} tokens per generation, greedy, ${ROUNDS} rounds; ` +
      `load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}`,
    '',
    '| figure | value |',
    '|---|---|',
    `| bare generation loop, same process (tokens/s) | ${fmt(bareTps, 0)} |`,
    `| HTTP /v1/completions, not streaming (tokens/s) | ${fmt(httpTps, 0)} |`,
    `| HTTP /v1/completions, streaming SSE (tokens/s) | ${fmt(streamTps, 0)} |`,
    `| **ratio HTTP ÷ bare**, wall clock, median of per-round ratios (target ≥ 0.95) | **${fmt(median(ratios))}** (streaming ${fmt(median(streamRatios))}) |`,
    `| ratio HTTP ÷ bare in tokens per CPU-second (whole server process vs the loop) | ${fmt(median(cpuRatios))} (streaming ${fmt(median(streamCpuRatios))}) |`,
    `| server CPU on its main thread (HTTP, queue, metrics) during those runs (%) | ${fmt(100 * median(mainShares), 1)} (streaming ${fmt(100 * median(streamMainShares), 1)}) |`,
    ...ttftRows.map(([c, t]) => `| time to first token, ${c} concurrent client${c > 1 ? 's' : ''} (ms, p50 / p99) | ${fmt(t.p50)} / ${fmt(t.p99)} |`),
    `| server event-loop lag while generating, 1 client (ms, p99 / max) | ${fmt(lagDuringHttp.p99)} / ${fmt(lagDuringHttp.max)} |`,
    `| server event-loop lag during the TTFT runs, up to 16 clients (ms, p99 / max) | ${fmt(lagDuringTtft.p99)} / ${fmt(lagDuringTtft.max)} |`,
    `| peak RSS growth during load ÷ model size (${fmt(load.weightBytes / 2 ** 20, 0)} MiB padded demo model) | ${fmt(load.ratio)} (${fmt(load.peakDelta / 2 ** 20, 0)} MiB) |`,
  ];
  if (profDir !== undefined) lines.push('', `server CPU profiles (main thread and engine worker): ${profDir}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (process.argv.includes('--load-memory')) process.stdout.write(JSON.stringify(await loadMemory()));
else await main();
