import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RedisServerHandle } from '@conclave/common';
import { NODE_AGENT_MAIN, nodeAgentStartArgv } from '@conclave/node-agent';
import type { Job__Output } from '@conclave/protocol';
import { spawnNode } from '../child-process.js';
import type { ChildHandle } from '../child-process.js';
import { createTestControl } from '../control.js';
import type { TestControl } from '../control.js';
import { Cleanup, mismatch, wireInputs } from '../e2e/e2e-support.js';
import { spawnNodeAgent, spawnOrchestrator, tempDir } from '../fleet.js';
import type { JoinSource } from '../fleet.js';
import { heavyModel } from '../onnx/heavy-model.js';
import { hostTensor } from '../onnx/host-tensor.js';
import type { HostTensor } from '../onnx/host-tensor.js';
import { randomDyadic, seededRandom } from '../onnx/seeded-random.js';
import type { TinyModel } from '../onnx/tiny-model.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { IN_NETNS_MAIN } from './netns.js';

/**
 * The drills' heartbeat period: short, so that the dead timeout (5 missed) is 1.5 s and a drill
 * takes seconds, yet long enough that a 2-core CI machine under load does not miss 3 in a row.
 */
export const DRILL_HEARTBEAT_MS = 300;
/** Heartbeats missed before the orchestrator declares a node dead (node-session.ts). */
export const DEAD_AFTER_MISSED_HEARTBEATS = 5;
/** What the drills promise: every node is connected again this long after its fault ends. */
export const REATTACH_LIMIT_MS = 10_000;
/** Jobs per drill. */
export const DRILL_JOBS = 300;
/** Longest a drill's load may take to finish, faults included. */
export const SETTLE_LIMIT_MS = 30_000;

/** About 25 ms a run on one x86 core (2·16·512²·512 flops); inputs of 32 KiB. */
export const drillModel: TinyModel = heavyModel({ size: 512, layers: 512, batch: 16, seed: 7 });
export const DRILL_MODEL_NAME = 'drill-heavy';

/**
 * Input number `n` of the drill model: distinct per job, so that a result delivered to the
 * wrong job shows. Dyadic and never zero, so the reference is exact (heavy-model.ts).
 */
export function drillInput(n: number, rows = DRILL_ROWS): Record<string, HostTensor> {
  const random = seededRandom(10_000 + n);
  const x = Float32Array.from({ length: rows * DRILL_WIDTH }, () => randomDyadic(random, 64, 4) || 0.5);
  return { x: hostTensor('float32', [rows, DRILL_WIDTH], x) };
}

/** The batch of a drill job: about 25 ms a run; time grows with it. */
export const DRILL_ROWS = 16;
const DRILL_WIDTH = 512;

/**
 * The drill model's reference, fast: its 512 layers compose to one signed permutation,
 * y[r, c] = sign[c] · x[r, from[c]], read off `drillModel.expected` for the single row
 * x = (1, 2, …, 512). The layer-by-layer reference would take seconds for 300 jobs.
 */
export const drillReference: TinyModel = (() => {
  const probe = Float32Array.from({ length: DRILL_WIDTH }, (_, i) => i + 1);
  const y = drillModel.expected({ x: hostTensor('float32', [1, DRILL_WIDTH], probe) }).y?.data;
  if (!(y instanceof Float32Array)) throw new Error('drill model: no float32 output y');
  const from = Array.from(y, (v) => Math.abs(v) - 1);
  const sign = Array.from(y, (v) => Math.sign(v));
  return {
    ...drillModel,
    expected(inputs) {
      const x = inputs.x?.data;
      if (!(x instanceof Float32Array)) throw new Error('drill reference: input x must be float32');
      const rows = x.length / DRILL_WIDTH;
      const out = new Float32Array(x.length);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < DRILL_WIDTH; c++) out[r * DRILL_WIDTH + c] = sign[c]! * x[r * DRILL_WIDTH + from[c]!]!;
      }
      return { y: hostTensor('float32', [rows, DRILL_WIDTH], out) };
    },
  };
})();

export type NodeChild = ChildHandle & { nodeId: string; dataDir: string; name: string; slots: number };
export type OrchestratorChild = Awaited<ReturnType<typeof spawnOrchestrator>>;

export interface DrillOptions {
  /** external: a harness redis-server passed with --redis-url; embedded: the orchestrator's own. */
  redis: 'external' | 'embedded';
  /** @default DRILL_HEARTBEAT_MS */
  heartbeatIntervalMs?: number;
  /** @default '127.0.0.1'; '0.0.0.0' for a node in another network namespace. */
  grpcHost?: string;
}

/**
 * One drill's fleet: a Redis (unless embedded), an orchestrator child on its own data dir, and
 * node-agent children, every stop registered so that `close` leaves nothing behind. The
 * orchestrator can be killed and restarted on the same data dir and port; `control` is always
 * a client of the current one.
 */
export class Drill {
  readonly cleanup = new Cleanup();
  readonly nodes: NodeChild[] = [];
  redis: RedisServerHandle | undefined;
  orchestrator!: OrchestratorChild;
  control!: TestControl;
  private redisDir = '';
  private orchDir = '';
  private readonly startedAt = performance.now();
  /** Phase → ms since the drill started, for its report. */
  readonly marks: Record<string, number> = {};

  /** Notes when a phase ended. */
  mark(phase: string): void {
    this.marks[phase] = performance.now() - this.startedAt;
  }

  private constructor(readonly options: Required<DrillOptions>) {}

  static async start(options: DrillOptions): Promise<Drill> {
    const drill = new Drill({ heartbeatIntervalMs: DRILL_HEARTBEAT_MS, grpcHost: '127.0.0.1', ...options });
    try {
      await drill.init();
    } catch (err) {
      await drill.close();
      throw err;
    }
    return drill;
  }

  get heartbeatIntervalMs(): number {
    return this.options.heartbeatIntervalMs;
  }

  /** Missed heartbeats until dead, in ms. */
  get deadTimeoutMs(): number {
    return DEAD_AFTER_MISSED_HEARTBEATS * this.options.heartbeatIntervalMs;
  }

  /** Waits until twice the dead timeout has passed since `faultAt` (a `performance.now()`): the fault outlasts it. */
  async holdPastDeadTimeout(faultAt: number): Promise<void> {
    const leftMs = 2 * this.deadTimeoutMs - (performance.now() - faultAt);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, leftMs)));
  }

  /** The gRPC port, the same across restarts. */
  get port(): number {
    return Number(this.orchestrator.address.split(':').pop());
  }

  /** Every line of every orchestrator this drill started, in order. */
  readonly orchestratorLines: string[][] = [];

  private async init(): Promise<void> {
    const orchDir = await tempDir('conclave-drill-orch-');
    this.cleanup.add(() => orchDir.remove());
    this.orchDir = orchDir.path;
    if (this.options.redis === 'external') {
      const redisDir = await tempDir('conclave-drill-redis-');
      this.cleanup.add(() => redisDir.remove());
      this.redisDir = redisDir.path;
      this.redis = await startRedis({ dir: redisDir.path });
      const redis = this.redis;
      this.cleanup.add(() => redis.stop());
    }
    await this.startOrchestrator(0);
    await this.control.addModel(DRILL_MODEL_NAME, drillModel.bytes);
    this.mark('orchestratorReady');
  }

  private async startOrchestrator(grpcPort: number): Promise<void> {
    const orchestrator = await spawnOrchestrator({
      ...(this.redis ? { redisUrl: this.redis.url } : {}),
      dataDir: this.orchDir,
      grpcPort,
      args: this.options.grpcHost === '127.0.0.1' ? [] : ['--grpc-host', this.options.grpcHost],
      // `orchestrator start` has no flag for it; the env is its documented way (docs/configuration.md).
      env: { CONCLAVE_HEARTBEAT_INTERVAL_MS: String(this.options.heartbeatIntervalMs) },
    });
    this.cleanup.add(() => orchestrator.stop());
    this.orchestratorLines.push(orchestrator.lines);
    this.orchestrator = orchestrator;
    const control = createTestControl({ address: this.loopbackAddress(orchestrator.address), operatorToken: orchestrator.operatorToken });
    this.cleanup.add(() => control.close());
    this.control = control;
  }

  /** A 0.0.0.0 listener is reached on loopback. */
  private loopbackAddress(address: string): string {
    return address.replace(/^0\.0\.0\.0:/, '127.0.0.1:');
  }

  /** The address a node on this host dials. */
  get address(): string {
    return this.loopbackAddress(this.orchestrator.address);
  }

  /** `count` node-agent children on this host, at debug level (their `job completed` lines count runs). */
  async addNodes(count: number, slots = 2): Promise<NodeChild[]> {
    const first = this.nodes.length;
    const source: JoinSource = { address: this.address, createJoinString: (ttlMs) => this.orchestrator.createJoinString(ttlMs) };
    // In parallel: most of a node's start is loading onnxruntime, and a drill starts three.
    const started = await Promise.allSettled(Array.from({ length: count }, async (_, i) => {
      const dir = await tempDir('conclave-drill-node-');
      this.cleanup.add(() => dir.remove());
      const node = await spawnNodeAgent({
        orchestrator: source, dataDir: dir.path, name: `drill-${first + i + 1}`, slots, args: ['--log-level', 'debug'],
      });
      return this.track(node, dir.path, `drill-${first + i + 1}`, slots);
    }));
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    await this.waitAllConnected(20_000);
    this.mark('nodesConnected');
    return this.nodes.slice(first);
  }

  /** A node-agent child inside network namespace `netns`, dialing the orchestrator at `address`. */
  async addNodeInNetns(netns: string, address: string, slots = 2): Promise<NodeChild> {
    const dir = await tempDir('conclave-drill-node-');
    this.cleanup.add(() => dir.remove());
    const join = await this.orchestrator.createJoinString();
    const name = `drill-ns-${this.nodes.length + 1}`;
    const child = spawnNode(IN_NETNS_MAIN, [
      netns, NODE_AGENT_MAIN,
      ...nodeAgentStartArgv({ orchestrator: address, dataDir: dir.path, httpPort: 0, join, name, slots }),
      '--log-level', 'debug',
    ]);
    this.cleanup.add(() => child.stop());
    const { node } = await child.ready('node-agent');
    const handle = Object.assign(child, { nodeId: node });
    const tracked = this.track(handle, dir.path, name, slots);
    await this.waitAllConnected(20_000);
    return tracked;
  }

  private track(node: ChildHandle & { nodeId: string }, dataDir: string, name: string, slots: number): NodeChild {
    this.cleanup.add(async () => {
      node.process.kill('SIGCONT');
      await node.stop();
    });
    const tracked = Object.assign(node, { dataDir, name, slots });
    this.nodes.push(tracked);
    return tracked;
  }

  /** A node that was killed, started again on its data dir (the same node id); it replaces the old one in `nodes`. */
  async restartNode(old: NodeChild): Promise<NodeChild> {
    const node = await spawnNodeAgent({
      orchestrator: this.address, dataDir: old.dataDir, name: old.name, slots: old.slots, args: ['--log-level', 'debug'],
    });
    const tracked = this.track(node, old.dataDir, old.name, old.slots);
    this.nodes.splice(this.nodes.indexOf(old), 1);
    await this.waitAllConnected(20_000, [tracked]);
    return tracked;
  }

  /** Each node's state as ListNodes gives it. */
  async nodeStates(): Promise<Map<string, string>> {
    return new Map((await this.control.listNodes()).map((n) => [n.id, n.state]));
  }

  /** Polls until `nodeId` is in one of `states`; resolves with the ms it took. */
  async waitNodeState(nodeId: string, states: readonly string[], timeoutMs: number, intervalMs = 25): Promise<number> {
    const started = performance.now();
    await waitUntil(async () => states.includes((await this.nodeStates()).get(nodeId) ?? ''), {
      what: `node ${nodeId} ${states.join(' or ')}`, timeoutMs, intervalMs,
    });
    return performance.now() - started;
  }

  /** Polls until every node (of `nodes`, default all) is connected; resolves with the ms it took. */
  async waitAllConnected(timeoutMs: number, nodes: readonly NodeChild[] = this.nodes, intervalMs = 50): Promise<number> {
    const started = performance.now();
    let last = new Map<string, string>();
    try {
      await waitUntil(async () => {
        last = await this.nodeStates();
        return nodes.every((n) => last.get(n.nodeId) === 'connected');
      }, { what: 'every node connected', timeoutMs, intervalMs });
    } catch (err) {
      const states = nodes.map((n) => {
        const state = last.get(n.nodeId) ?? 'absent';
        return state === 'connected' ? `${n.nodeId}=connected` : `${n.nodeId}=${state}, its last lines:\n  ${n.lines.slice(-3).join('\n  ')}`;
      }).join('\n');
      throw new Error(`${(err as Error).message}:\n${states}`, { cause: err });
    }
    return performance.now() - started;
  }

  /** A node with at least one job running on it, by ListNodes. */
  async busyNode(timeoutMs = 20_000): Promise<NodeChild> {
    return waitUntil(async () => {
      const running = new Map((await this.control.listNodes()).map((n) => [n.id, n.running]));
      return this.nodes.find((n) => (running.get(n.nodeId) ?? 0) > 0);
    }, { what: 'a node running a job', timeoutMs, intervalMs: 20 });
  }

  /** Ends the orchestrator with `signal` (SIGKILL: abrupt; SIGTERM: its graceful stop); resolves with its exit code. */
  async stopOrchestrator(signal: 'SIGKILL' | 'SIGTERM'): Promise<number | null> {
    const orchestrator = this.orchestrator;
    const code = signal === 'SIGTERM' ? await orchestrator.stop(15_000) : (orchestrator.process.kill('SIGKILL'), await orchestrator.exited);
    this.control.close();
    return code;
  }

  /** A new orchestrator on the same data dir, Redis and port. */
  async restartOrchestrator(): Promise<void> {
    await this.startOrchestrator(this.port);
  }

  /** The pid of the orchestrator's embedded redis-server, from its pid file. */
  async embeddedRedisPid(): Promise<number> {
    const pid = Number((await readFile(join(this.orchDir, 'redis', 'redis.pid'), 'utf8')).trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no embedded redis pid under ${this.orchDir}`);
    return pid;
  }

  /** kill -9 of the external redis-server, then a new one on the same port and dir (its AOF). */
  async crashExternalRedis(downMs: number): Promise<void> {
    const redis = this.redis;
    if (!redis) throw new Error('this drill has an embedded redis');
    redis.kill('SIGKILL');
    await redis.exited;
    await new Promise((resolve) => setTimeout(resolve, downMs));
    this.redis = await startRedis({ dir: this.redisDir, port: redis.port });
    const restarted = this.redis;
    this.cleanup.add(() => restarted.stop());
  }

  /** Stops everything; the nodes first and together (each may take its grace period). */
  async close(): Promise<void> {
    await Promise.allSettled(this.nodes.map(async (node) => {
      node.process.kill('SIGCONT');
      await node.stop(3_000);
    }));
    await this.cleanup.run();
  }
}

/** What one job's executions looked like from the nodes' logs. */
export interface RunCounts {
  /** Job id → the number of times a node logged it completed. */
  done: Map<string, number>;
}

const JOB_DONE = /job completed/;
const JOB_ID = /\bjobId=("?)([^\s"]+)\1/;

/** Counts `job completed` lines per job id over every node's output (a killed node's lines included). */
export function countRuns(nodes: readonly NodeChild[]): Map<string, number> {
  const done = new Map<string, number>();
  for (const node of nodes) {
    for (const line of node.lines) {
      if (!JOB_DONE.test(line)) continue;
      const id = JOB_ID.exec(line)?.[2];
      if (id) done.set(id, (done.get(id) ?? 0) + 1);
    }
  }
  return done;
}

/**
 * `count` jobs submitted up front, each waited for by its own WatchJob; a watch that breaks (the
 * orchestrator went away) is retried on whatever `drill.control` is then, until `SETTLE_LIMIT_MS`.
 */
export class DrillLoad {
  readonly inputs: Array<Record<string, HostTensor>>;
  readonly ids: string[] = [];
  private readonly records = new Map<string, Job__Output>();
  private settling: Promise<void> | undefined;
  private readonly deadline: number;

  private constructor(private readonly drill: Drill, count: number, timeoutMs: number) {
    this.inputs = Array.from({ length: count }, (_, n) => drillInput(n));
    this.deadline = Date.now() + timeoutMs;
  }

  static async submit(drill: Drill, count = DRILL_JOBS, timeoutMs = SETTLE_LIMIT_MS): Promise<DrillLoad> {
    const load = new DrillLoad(drill, count, timeoutMs);
    // In batches: 300 submits of 32 KiB at once would all queue behind each other anyway.
    for (let i = 0; i < count; i += 100) {
      const batch = load.inputs.slice(i, i + 100);
      const jobs = await Promise.all(batch.map((x) => drill.control.infer(DRILL_MODEL_NAME, wireInputs(x), { timeoutMs: 30_000 })));
      load.ids.push(...jobs.map((j) => j.id));
    }
    load.settling = Promise.all(load.ids.map((id) => load.follow(id))).then(() => drill.mark('settled'));
    drill.mark('submitted');
    return load;
  }

  get count(): number {
    return this.ids.length;
  }

  /** Jobs seen in a terminal state so far. */
  get finished(): number {
    return this.records.size;
  }

  private async follow(id: string): Promise<void> {
    while (Date.now() < this.deadline) {
      try {
        this.records.set(id, await this.drill.control.wait(id, Math.max(1, this.deadline - Date.now())));
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  /** Resolves once `n` jobs have finished (any terminal state). */
  async waitFinished(n: number, timeoutMs = 30_000): Promise<void> {
    await waitUntil(() => this.finished >= n, { what: `${n} of ${this.count} jobs finished`, timeoutMs, intervalMs: 20 });
  }

  /** Resolves once a fifth of the jobs have finished: the fleet is busy, most of the work is still ahead. */
  async midLoad(): Promise<void> {
    await this.waitFinished(Math.ceil(this.count / 5));
    this.drill.mark('midLoad');
  }

  /** Every job's terminal record, once each has one or the deadline has passed (missing: lost). */
  async settled(): Promise<Map<string, Job__Output>> {
    await this.settling;
    return new Map(this.records);
  }

  /**
   * What is wrong with the load's outcome: jobs with no terminal state, jobs that did not
   * complete, and outputs that differ from the model's reference. Empty when all is well.
   */
  problems(records: ReadonlyMap<string, Job__Output>): string[] {
    const lost: string[] = [];
    const wrong: string[] = [];
    const byState = new Map<string, number>();
    this.ids.forEach((id, n) => {
      const job = records.get(id);
      if (!job) {
        lost.push(id);
        return;
      }
      const key = job.state === 'JOB_STATE_COMPLETED' ? job.state : `${job.state} ${job.error?.code ?? ''} ${job.error?.message ?? ''}`.trim();
      byState.set(key, (byState.get(key) ?? 0) + 1);
      const why = mismatch(job, drillReference, this.inputs[n] ?? {});
      if (why !== undefined) wrong.push(why);
    });
    const out: string[] = [];
    if (lost.length > 0) out.push(`${lost.length} of ${this.count} jobs never finished (lost), e.g. ${lost.slice(0, 3).join(', ')}`);
    const notCompleted = [...byState].filter(([state]) => state !== 'JOB_STATE_COMPLETED');
    for (const [state, n] of notCompleted) out.push(`${n} of ${this.count} jobs ended ${state}`);
    const badOutputs = wrong.filter((w) => !/ is JOB_STATE_/.test(w));
    if (badOutputs.length > 0) out.push(`${badOutputs.length} jobs completed with a wrong output, e.g. ${badOutputs.slice(0, 3).join('; ')}`);
    return out;
  }

  /**
   * Reads every record again and lists those that changed since `first` (state, node, attempts or
   * finish time): a job that completed and later ran again, or was overwritten by a late result.
   */
  async changedSince(first: ReadonlyMap<string, Job__Output>): Promise<string[]> {
    const changed: string[] = [];
    for (let i = 0; i < this.ids.length; i += 50) {
      const again = await Promise.all(this.ids.slice(i, i + 50).map((id) => this.drill.control.get(id)));
      for (const job of again) {
        const before = first.get(job.id);
        if (!before) continue;
        const a = `${before.state} node=${before.node} attempts=${before.attempts} finished=${String(before.finishedAtMs)}`;
        const b = `${job.state} node=${job.node} attempts=${job.attempts} finished=${String(job.finishedAtMs)}`;
        if (a !== b) changed.push(`${job.id}: ${a} → ${b}`);
      }
    }
    return changed;
  }

  /**
   * Like `changedSince`, after the time a woken or reconnected node needs to finish what it held
   * and resend its outbox (three heartbeats and a second): a late result must change nothing.
   */
  async changedByLateResults(first: ReadonlyMap<string, Job__Output>): Promise<string[]> {
    await new Promise((resolve) => setTimeout(resolve, 3 * this.drill.heartbeatIntervalMs + 1_000));
    return this.changedSince(first);
  }

  /** A one-line account for the drill's report: how many moved, how many ran twice. */
  summary(records: ReadonlyMap<string, Job__Output>, nodes: readonly NodeChild[]): DrillSummary {
    const runs = countRuns(nodes);
    const jobs = [...records.values()];
    return {
      jobs: this.count,
      completed: jobs.filter((j) => j.state === 'JOB_STATE_COMPLETED').length,
      retried: jobs.filter((j) => j.attempts > 1).length,
      ranTwice: this.ids.filter((id) => (runs.get(id) ?? 0) > 1).length,
      runsLogged: [...runs.values()].reduce((a, b) => a + b, 0),
    };
  }
}

export interface DrillSummary {
  jobs: number;
  completed: number;
  /** Jobs whose record says attempts > 1. */
  retried: number;
  /** Jobs that nodes logged done more than once. */
  ranTwice: number;
  /** `job completed` lines over all nodes (≥ jobs when every run was logged). */
  runsLogged: number;
}

/** Prints a drill's figures, and when each phase ended, where the test run shows them. */
export function report(drill: Drill, name: string, figures: Record<string, number | string>): void {
  const text = (f: Record<string, number | string>) =>
    Object.entries(f).map(([k, v]) => `${k}=${typeof v === 'number' ? Math.round(v) : v}`).join(' ');
  console.info(`[fault drill] ${name}: ${text(figures)} | phases (ms): ${text(drill.marks)}`);
}
