/**
 * `pnpm bench logs`: fleet log shipping, each figure beside its baseline measured in the same run:
 *
 *   lag        10 node agents (in this process, real sealed sessions) log 1,000 records/s in all;
 *              each record's time of the log call → the line printed by `orchestrator logs -f
 *              --json` (a child process, reading the orchestrator's store): p50/p99. Target p99 ≤ 1 s.
 *   cost       the orchestrator's CPU (its own process, /proc schedstat) per 1,000 records stored,
 *              less what it spends idle with the same fleet, against the CPU this process spends
 *              writing the same records to a local JSON-lines file with the node's own logger.
 *
 *   node packages/testing/dist/bench/logs-bench.js [--seconds 10] [--nodes 10] [--rate 1000] [--profile-dir DIR]
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { EXIT_FAILURE, EXIT_OK, LogTap, createLogger, percentileOf, processCpuNanos, z } from '@conclave/common';
import type { ClosableLogger } from '@conclave/common';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import { spawnOrchestrator, startTestNode, tempDir } from '../fleet.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';

const OptionsSchema = z.object({
  seconds: z.coerce.number().positive().default(10),
  nodes: z.coerce.number().int().positive().default(10),
  /** Records a second across the fleet. */
  rate: z.coerce.number().int().positive().default(1_000),
  /** Write the orchestrator's CPU profile here when it exits. */
  profileDir: z.string().optional(),
});

/** What each record carries besides its marker: about what a job line holds. */
const FIELDS = { attempt: 1, model: 'affine', runMs: 3.25, queueMs: 0.5 };
const IDLE_MEASURE_MS = 3_000;

interface BenchNode {
  logger: ClosableLogger;
  close(): Promise<void>;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { seconds: { type: 'string' }, nodes: { type: 'string' }, rate: { type: 'string' }, 'profile-dir': { type: 'string' } }, strict: true,
  });
  const options = OptionsSchema.parse({ ...values, profileDir: values['profile-dir'] });
  const redis = await startRedis();
  const orchestratorDir = await tempDir('conclave-bench-logs-orch-');
  const orchestrator = await spawnOrchestrator({
    redisUrl: redis.url, dataDir: orchestratorDir.path,
    ...(options.profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`] } : {}),
  });
  const nodes: BenchNode[] = [];
  const env = { ...process.env, CONCLAVE_ADDRESS: orchestrator.address, CONCLAVE_OPERATOR_TOKEN: orchestrator.operatorToken };
  const follower = spawn(process.execPath, [ORCHESTRATOR_MAIN, 'logs', '-f', '--json', '--prefix', 'NODE-', '--section', 'REQ', '--limit', '1'], {
    env, stdio: ['ignore', 'pipe', 'inherit'],
  });
  let failed = false;
  try {
    for (let i = 0; i < options.nodes; i += 1) {
      const tap = new LogTap('info');
      // Nothing printed or written: the node's cost here is its shipping, measured apart below.
      const logger = createLogger({ prefix: 'NODE', console: false, tap });
      const node = await startTestNode({ orchestrator, logger, logTap: tap, inference: false, name: `bench-${i}` });
      nodes.push({ logger, close: () => node.close() });
    }
    const lags: number[] = [];
    let gaps = 0;
    let buffered = '';
    follower.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const now = Date.now();
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        const record = JSON.parse(line) as { benchSentAtMs?: number; gap?: boolean };
        if (record.gap) gaps += 1;
        if (typeof record.benchSentAtMs === 'number') lags.push(now - record.benchSentAtMs);
      }
    });

    // The orchestrator with this fleet and nothing logged: what its CPU is without the records.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const idleStart = processCpuNanos(orchestrator.process.pid ?? 0);
    await new Promise((resolve) => setTimeout(resolve, IDLE_MEASURE_MS));
    const idleNanosPerMs = (processCpuNanos(orchestrator.process.pid ?? 0) - idleStart) / IDLE_MEASURE_MS;

    const total = Math.round(options.seconds * options.rate);
    const tickMs = 10;
    const perTick = (options.rate * tickMs) / 1000;
    const cpuStart = processCpuNanos(orchestrator.process.pid ?? 0);
    const start = performance.now();
    let sent = 0;
    for (let tick = 0; sent < total; tick += 1) {
      const due = start + tick * tickMs;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      for (let k = 0; k < perTick && sent < total; k += 1, sent += 1) {
        (nodes[sent % nodes.length] as BenchNode).logger.info('REQ', 'bench record', { ...FIELDS, benchSeq: sent, benchSentAtMs: Date.now() });
      }
    }
    await waitUntil(() => lags.length >= total, { timeoutMs: 60_000, intervalMs: 50, what: `all ${total} records in \`logs -f\`` }).catch(() => undefined);
    const elapsedMs = performance.now() - start;
    const orchestratorNanos = processCpuNanos(orchestrator.process.pid ?? 0) - cpuStart - idleNanosPerMs * elapsedMs;
    const orchestratorMsPer1000 = orchestratorNanos / 1e6 / (lags.length / 1000);

    // Baseline: the node's own logger writing the same records to its rotated JSON-lines file.
    const fileDir = await tempDir('conclave-bench-logs-file-');
    const fileLogger = createLogger({ prefix: 'NODE', console: false, file: { dir: fileDir.path } });
    const fileCpuStart = process.cpuUsage();
    for (let i = 0; i < total; i += 1) fileLogger.info('REQ', 'bench record', { ...FIELDS, benchSeq: i, benchSentAtMs: Date.now() });
    await fileLogger.close();
    const fileCpu = process.cpuUsage(fileCpuStart);
    const fileMsPer1000 = (fileCpu.user + fileCpu.system) / 1000 / (total / 1000);
    await fileDir.remove();

    const p50 = percentileOf(lags, 0.5);
    const p99 = percentileOf(lags, 0.99);
    console.log(`fleet logs: ${options.nodes} node agents × ${options.rate / options.nodes} records/s for ${options.seconds} s (${total} records), harness redis-server`);
    console.log(`delivered to \`orchestrator logs -f\`: ${lags.length} of ${total}, gap records ${gaps}`);
    console.log(`log call → line in logs -f   p50 ${p50.toFixed(0)} ms   p99 ${p99.toFixed(0)} ms   max ${Math.max(...lags).toFixed(0)} ms   target p99 ≤ 1,000 ms: ${p99 <= 1000 ? 'PASS' : 'MISS'}`);
    console.log('CPU per 1,000 records          ms');
    console.log(`orchestrator (store)     ${orchestratorMsPer1000.toFixed(1).padStart(8)}   (idle ${(idleNanosPerMs / 1e3).toFixed(1)} ms/s subtracted)`);
    console.log(`node's local file        ${fileMsPer1000.toFixed(1).padStart(8)}`);
    console.log(`ratio                    ${(orchestratorMsPer1000 / fileMsPer1000).toFixed(2).padStart(8)}`);
    if (lags.length < total) failed = true;
  } finally {
    follower.kill('SIGTERM');
    for (const node of nodes) await node.close().catch(() => undefined);
    for (const node of nodes) await node.logger.close().catch(() => undefined);
    await orchestrator.stop();
    await orchestratorDir.remove();
    await redis.stop();
  }
  return failed ? EXIT_FAILURE : EXIT_OK;
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(err);
  process.exit(EXIT_FAILURE);
});
