/**
 * `pnpm bench faults`: failure detection and recovery on a fleet of child processes (an
 * orchestrator on a harness redis-server, three node agents), over a few repetitions:
 *
 *   crash → dead               kill -9 of a node until ListNodes no longer calls it connected
 *   silent → dead              SIGSTOP of a node until ListNodes says dead
 *   dead → running elsewhere   from that moment until every job it was running runs on another node
 *   restart → re-attached      kill -9 of the orchestrator, restart on the same data dir and port,
 *                              until every node is connected again
 *
 * The baseline of this bench is the target itself (docs/DESIGN.md, "failure detection"): each
 * figure is printed with its ratio measured ÷ target. The default heartbeat interval (1000 ms)
 * is used so that the figures are the real ones.
 *
 *   node packages/testing/dist/bench/faults-bench.js [--reps 3] [--heartbeat-ms 1000]
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { EXIT_FAILURE, EXIT_OK, percentile, z } from '@conclave/common';
import type { Job__Output } from '@conclave/protocol';
import { mismatch, wireInputs } from '../e2e/e2e-support.js';
import { waitUntil } from '../wait-until.js';
import { Drill, DRILL_MODEL_NAME, drillInput, drillReference } from '../faults/drill.js';
import type { NodeChild } from '../faults/drill.js';

const BenchOptionsSchema = z.object({
  /** Repetitions of each measurement. */
  reps: z.coerce.number().int().positive().default(3),
  /** The orchestrator's heartbeat interval; the targets assume the default. */
  heartbeatMs: z.coerce.number().int().positive().default(1000),
});
type BenchOptions = z.infer<typeof BenchOptionsSchema>;

/** Long enough (≈ 0.8 s a run) that a job is surely still running when its node is lost. */
const SLOW_JOB_ROWS = 512;
/** How often the bench polls ListNodes and GetJob: the resolution of every figure. */
const POLL_MS = 10;
/** Past this, a measurement is recorded as a timeout rather than waited for. */
const GIVE_UP_MS = 30_000;

interface Scenario {
  name: string;
  /** Absent: a part of another figure, shown for the breakdown. */
  targetMs?: number;
  samples: number[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { reps: { type: 'string' }, 'heartbeat-ms': { type: 'string' } },
    strict: true,
  });
  const options = BenchOptionsSchema.parse({ reps: values.reps, heartbeatMs: values['heartbeat-ms'] });
  const scenarios = {
    crash: { name: 'crash → dead (kill -9)', targetMs: 2_000, samples: [] as number[] },
    silent: { name: 'silent → dead (SIGSTOP)', targetMs: 6_000, samples: [] as number[] },
    moved: { name: 'dead → running elsewhere', targetMs: 1_000, samples: [] as number[] },
    restart: { name: 'orchestrator kill -9 → all re-attached', targetMs: 10_000, samples: [] as number[] },
    restartReady: { name: '  of which kill -9 → new orchestrator ready', samples: [] as number[] },
  } satisfies Record<string, Scenario>;

  const drill = await Drill.start({ redis: 'external', heartbeatIntervalMs: options.heartbeatMs });
  let inputNumber = 0;
  try {
    await drill.addNodes(3);
    for (let rep = 0; rep < options.reps; rep++) {
      for (const fault of ['SIGKILL', 'SIGSTOP'] as const) {
        const victim = drill.nodes[rep % drill.nodes.length]!;
        const { ids, inputs } = await loadOnto(drill, victim, inputNumber);
        inputNumber += ids.length;
        victim.process.kill(fault);
        const faultAt = performance.now();
        const deadStates = fault === 'SIGKILL' ? ['dead', 'disconnected'] : ['dead'];
        const toDead = await succeeded(() => drill.waitNodeState(victim.nodeId, deadStates, GIVE_UP_MS, POLL_MS));
        const deadAt = performance.now();
        (fault === 'SIGKILL' ? scenarios.crash : scenarios.silent).samples.push(toDead ? deadAt - faultAt : Number.NaN);
        const moved = await succeeded(() => waitRunningElsewhere(drill, ids, victim));
        scenarios.moved.samples.push(moved ? performance.now() - deadAt : Number.NaN);
        await expectExact(drill, ids, inputs);
        if (fault === 'SIGKILL') {
          await victim.exited;
          await drill.restartNode(victim);
        } else {
          victim.process.kill('SIGCONT');
          await drill.waitAllConnected(GIVE_UP_MS, [victim]);
        }
      }
      const killedAt = performance.now();
      await drill.stopOrchestrator('SIGKILL');
      await drill.restartOrchestrator();
      scenarios.restartReady.samples.push(performance.now() - killedAt);
      const reattached = await succeeded(() => drill.waitAllConnected(GIVE_UP_MS, drill.nodes, POLL_MS));
      scenarios.restart.samples.push(reattached ? performance.now() - killedAt : Number.NaN);
      // Every node is back before the next repetition, however long it took.
      await drill.waitAllConnected(60_000);
    }
  } finally {
    await drill.close();
  }
  printReport(options, Object.values(scenarios));
}

/**
 * Two slow jobs running on `victim` (its two slots), with the other nodes free to take them
 * over: the others are drained while the jobs are placed, then undrained.
 */
async function loadOnto(drill: Drill, victim: NodeChild, first: number): Promise<{ ids: string[]; inputs: ReturnType<typeof drillInput>[] }> {
  const others = drill.nodes.filter((n) => n !== victim);
  for (const node of others) await drill.control.drainNode(node.nodeId);
  const inputs = Array.from({ length: victim.slots }, (_, i) => drillInput(first + i, SLOW_JOB_ROWS));
  const ids = (await Promise.all(inputs.map((x) => drill.control.infer(DRILL_MODEL_NAME, wireInputs(x), { timeoutMs: 60_000 })))).map((j) => j.id);
  await waitUntil(async () => {
    const jobs = await Promise.all(ids.map((id) => drill.control.get(id)));
    return jobs.every((j) => j.state === 'JOB_STATE_RUNNING' && j.node === victim.nodeId);
  }, { what: `both jobs running on ${victim.nodeId}`, timeoutMs: 20_000, intervalMs: POLL_MS });
  for (const node of others) await drill.control.undrainNode(node.nodeId);
  return { ids, inputs };
}

/** Resolves once every job of `ids` runs (or has finished) on a node other than `victim`. */
async function waitRunningElsewhere(drill: Drill, ids: string[], victim: NodeChild): Promise<void> {
  await waitUntil(async () => {
    const jobs = await Promise.all(ids.map((id) => drill.control.get(id)));
    return jobs.every((j) => (j.state === 'JOB_STATE_RUNNING' || j.state === 'JOB_STATE_COMPLETED') && j.node !== '' && j.node !== victim.nodeId);
  }, { what: 'the jobs running elsewhere', timeoutMs: GIVE_UP_MS, intervalMs: POLL_MS });
}

/** The jobs must still complete with the exact output: a fast recovery that loses work is no figure. */
async function expectExact(drill: Drill, ids: string[], inputs: ReturnType<typeof drillInput>[]): Promise<void> {
  const jobs: Job__Output[] = await Promise.all(ids.map((id) => drill.control.wait(id, 60_000)));
  const wrong = jobs.map((job, i) => mismatch(job, drillReference, inputs[i] ?? {})).filter((m) => m !== undefined);
  if (wrong.length > 0) throw new Error(`jobs moved off a lost node did not complete exactly: ${wrong.join('; ')}`);
}

/** Runs `step`; false when it timed out (the figure is then a timeout, not a number). */
async function succeeded(step: () => Promise<unknown>): Promise<boolean> {
  try {
    await step();
    return true;
  } catch (err) {
    console.error(`faults bench: ${(err as Error).message}`);
    return false;
  }
}

function printReport(options: BenchOptions, scenarios: Scenario[]): void {
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? 'timeout' : v.toFixed(0));
  const lines = [
    `faults: ${options.reps} repetition(s), 3 node-agent children × 2 slots, orchestrator child on a harness redis-server, `
      + `heartbeat interval ${options.heartbeatMs} ms (dead after 5 missed); node ${process.version}, ${cpus().length} cores`,
    '',
    row(['figure', 'min ms', 'median ms', 'max ms', 'target ms', 'median ÷ target', 'verdict']),
    row(['---', '---:', '---:', '---:', '---:', '---:', '---']),
  ];
  for (const s of scenarios) {
    // A timeout counts as worse than any number.
    const sorted = s.samples.map((v) => (Number.isNaN(v) ? Number.POSITIVE_INFINITY : v)).sort((a, b) => a - b);
    const show = (v: number | undefined) => (v === Number.POSITIVE_INFINITY ? 'timeout' : ms(v));
    const median = percentile(sorted, 0.5);
    const max = sorted[sorted.length - 1];
    if (s.targetMs === undefined) {
      lines.push(row([s.name, show(sorted[0]), show(median), show(max), '—', '—', '']));
      continue;
    }
    const ratio = median / s.targetMs;
    lines.push(row([
      s.name, show(sorted[0]), show(median), show(max), String(s.targetMs),
      Number.isFinite(ratio) ? ratio.toFixed(2) : '—', max !== undefined && max <= s.targetMs ? 'PASS' : 'FAIL',
    ]));
  }
  lines.push('', 'verdict: PASS when every repetition (max) is within the target.');
  console.log(lines.join('\n'));
}

main().then(
  () => process.exit(EXIT_OK),
  (err: unknown) => {
    console.error(err);
    process.exit(EXIT_FAILURE);
  },
);
