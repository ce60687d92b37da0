/**
 * `pnpm bench chat`: the group chat through the orchestrator, each figure beside its baseline
 * measured in the same run on the same Redis:
 *
 *   sequenced msgs/s   10 members, each a real sealed node session, post; every post is one
 *                      append script (idempotency, INCR, XADD MAXLEN ~) and one reply.
 *                      Baseline: raw XADD of the same payloads by 10 posters on one connection,
 *                      with the same number of posts in flight per poster.
 *   fan-out            one member posts at 100 msgs/s into a room of 100 members: post → delivery
 *                      at every member, p50/p99 (one process: one clock).
 *   claim round trip   claim + release by one member, p50/p99; baseline: SET NX PX + DEL round trip.
 *
 *   node packages/testing/dist/bench/chat-bench.js [--posts 2000] [--fanout-seconds 5] [--profile-dir DIR]
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { EXIT_FAILURE, EXIT_OK, nullLogger, percentileOf, z } from '@conclave/common';
import { CHAT_ACK_DELAY_MS, NodeCredentials, OrchestratorLink } from '@conclave/node-agent';
import { createControlClient } from '@conclave/protocol';
import type { ChatDelivery__Output, ChatReply__Output, ChatRequest, ChatAck } from '@conclave/protocol';
import { spawnOrchestrator, tempDir } from '../fleet.js';
import type { JoinSource } from '../fleet.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';

const OptionsSchema = z.object({
  /** Posts per member in the throughput run. */
  posts: z.coerce.number().int().positive().default(2_000),
  fanoutSeconds: z.coerce.number().positive().default(5),
  /** Write the orchestrator's CPU profile here when it exits. */
  profileDir: z.string().optional(),
});

const POSTERS = 10;
const FANOUT_MEMBERS = 100;
const FANOUT_RATE_PER_S = 100;
const CLAIM_ROUNDS = 300;
/** Posts each member keeps in flight: 1 (send, wait, send) and a window, as a busy agent batches them. */
const WINDOWS = [1, 32] as const;
const PAYLOAD = 'x'.repeat(64);

/** A bare node session speaking only the chat: what a node agent's chat client sends, without its outbox. */
class BenchMember {
  private link!: OrchestratorLink;
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: ChatReply__Output) => void>();
  private queued: ChatRequest[] = [];
  private acks = new Map<string, number>();
  private flushing = false;
  private ackTimer: NodeJS.Timeout | undefined;
  onDelivery: (delivery: ChatDelivery__Output) => void = () => undefined;

  static async connect(orchestrator: JoinSource, name: string): Promise<BenchMember> {
    const member = new BenchMember();
    const dir = await tempDir('conclave-bench-member-');
    const credentials = await NodeCredentials.load(dir.path, await orchestrator.createJoinString());
    let connected: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => {
      connected = resolve;
    });
    member.link = new OrchestratorLink({
      address: orchestrator.address, logger: nullLogger, identity: credentials.identity, pins: credentials.pins,
      token: () => credentials.token,
      onEstablished: ({ addedPins }) => credentials.addPins(addedPins),
      register: () => ({
        nodeId: credentials.nodeId, name, slots: 1, models: [], pendingResults: [], runningJobs: [],
        capabilities: { cpuCores: 1, memoryBytes: 0, backends: [], backendActive: '', features: [], agentVersion: 'bench' },
      }),
      heartbeat: () => ({ slots: 1, loadedModels: [], memoryUsedBytes: 0, backendActive: '', runningJobs: [] }),
      handler: {
        assign: () => undefined, cancel: () => undefined, modelChunk: () => undefined, resultAck: () => undefined, logAck: () => undefined,
        chatReplies: (replies) => {
          for (const reply of replies.replies) {
            const done = member.waiting.get(Number(reply.requestId));
            member.waiting.delete(Number(reply.requestId));
            done?.(reply);
          }
        },
        chatDelivery: (delivery) => {
          member.onDelivery(delivery);
          const last = delivery.messages.at(-1);
          if (last) member.ack(delivery.room, Number(last.seq));
        },
        connected: () => connected(),
        disconnected: () => undefined,
        fatal: () => undefined,
      },
    });
    member.link.start();
    await ready;
    return member;
  }

  /** Requests of one turn go in one sealed frame, as the agent's chat client sends them. */
  request(op: Omit<ChatRequest, 'requestId'>): Promise<ChatReply__Output> {
    const requestId = this.nextId++;
    this.queued.push({ requestId, ...op });
    this.scheduleFlush();
    return new Promise((resolve) => this.waiting.set(requestId, resolve));
  }

  async post(room: string, text: string): Promise<number> {
    const reply = await this.request({ post: { room, text, clientMsgId: randomUUID() } });
    if (!reply.posted) throw new Error(`post failed: ${reply.error?.code ?? ''} ${reply.error?.message ?? ''}`);
    return Number(reply.posted.seq);
  }

  /** As the agent's chat client acknowledges: after CHAT_ACK_DELAY_MS, so that acks share frames. */
  private ack(room: string, seq: number): void {
    this.acks.set(room, seq);
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      this.scheduleFlush();
    }, CHAT_ACK_DELAY_MS);
  }

  private scheduleFlush(): void {
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      if (this.queued.length > 0) this.link.send({ chat: { requests: this.queued.splice(0) } });
      for (const [room, seq] of this.acks) this.link.send({ chatAck: { room, seq } satisfies ChatAck });
      this.acks.clear();
    });
  }

  close(): Promise<void> {
    clearTimeout(this.ackTimer);
    return this.link.close();
  }
}

async function createRoom(address: string, operatorToken: string, room: string): Promise<void> {
  const control = createControlClient(address, { operatorToken });
  try {
    await new Promise<void>((resolve, reject) => control.CreateRoom({ room }, (err) => (err ? reject(err) : resolve())));
  } finally {
    control.close();
  }
}

/** Runs `posters` loops of `perPoster` posts with `window` in flight each; resolves with msgs/s. */
async function throughput(posters: number, perPoster: number, window: number, post: (poster: number, i: number) => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await Promise.all(Array.from({ length: posters }, async (_, poster) => {
    let next = 0;
    await Promise.all(Array.from({ length: window }, async () => {
      while (next < perPoster) {
        const i = next;
        next += 1;
        await post(poster, i);
      }
    }));
  }));
  return (posters * perPoster) / ((performance.now() - started) / 1000);
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { posts: { type: 'string' }, 'fanout-seconds': { type: 'string' }, 'profile-dir': { type: 'string' } }, strict: true });
  const options = OptionsSchema.parse({ posts: values.posts, fanoutSeconds: values['fanout-seconds'], profileDir: values['profile-dir'] });
  const redisServer = await startRedis();
  // Its own process, as in production: the members' sealing and opening do not share its event loop.
  const orchestratorDir = await tempDir('conclave-bench-orch-');
  const orchestrator = await spawnOrchestrator({
    redisUrl: redisServer.url, dataDir: orchestratorDir.path,
    ...(options.profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`] } : {}),
  });
  const raw = new Redis(redisServer.url);
  const members: BenchMember[] = [];
  let failed = false;
  try {
    for (let i = 0; i < FANOUT_MEMBERS; i += 1) members.push(await BenchMember.connect(orchestrator, `bench-${i}`));
    const posters = members.slice(0, POSTERS);
    // Warm-up: scripts loaded, JIT warm, on both arms.
    await throughput(POSTERS, 100, 8, (p) => (posters[p] as BenchMember).post('fleet', PAYLOAD));
    await throughput(POSTERS, 100, 8, () => raw.xadd('bench:raw', 'MAXLEN', '~', 10_000, '*', 's', 'poster', 'k', 'text', 't', PAYLOAD, 'a', Date.now()));

    console.log(`chat throughput: ${POSTERS} members × ${options.posts} posts of ${PAYLOAD.length} bytes, sealed node sessions, harness redis-server`);
    console.log('in flight/member   orchestrator msgs/s   raw XADD msgs/s   ratio   target');
    for (const window of WINDOWS) {
      const sequenced = await throughput(POSTERS, options.posts, window, (p) => (posters[p] as BenchMember).post('fleet', PAYLOAD));
      const baseline = await throughput(POSTERS, options.posts, window, (p) => raw.xadd('bench:raw', 'MAXLEN', '~', 10_000, '*', 's', `poster-${p}`, 'k', 'text', 't', PAYLOAD, 'a', Date.now()));
      const ratio = sequenced / baseline;
      const pass = sequenced >= 10_000 && ratio >= 0.5;
      console.log(`${String(window).padStart(16)}   ${fmt(sequenced).padStart(19)}   ${fmt(baseline).padStart(15)}   ${ratio.toFixed(2).padStart(5)}   ≥ 10,000/s and ≥ 0.5: ${pass ? 'PASS' : 'MISS'}`);
    }

    // Fan-out: every member follows one room; one posts at a steady rate.
    const room = 'bench-fanout';
    await createRoom(orchestrator.address, orchestrator.operatorToken, room);
    const latencies: number[] = [];
    await Promise.all(members.map(async (member) => {
      const joined = await member.request({ join: { room } });
      if (joined.error) throw new Error(joined.error.message);
      member.onDelivery = (delivery) => {
        if (delivery.room !== room) return;
        const now = performance.now();
        for (const message of delivery.messages) {
          const sentAt = Number(message.text.split(' ')[0]);
          if (Number.isFinite(sentAt) && sentAt > 0) latencies.push(now - sentAt);
        }
      };
      const subscribed = await member.request({ subscribe: { room, afterSeq: 0, epoch: '' } });
      if (subscribed.error) throw new Error(subscribed.error.message);
    }));
    const total = Math.round(options.fanoutSeconds * FANOUT_RATE_PER_S);
    const poster = members[0] as BenchMember;
    const start = performance.now();
    for (let i = 0; i < total; i += 1) {
      const due = start + (i * 1000) / FANOUT_RATE_PER_S;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      void poster.post(room, `${performance.now()} ${PAYLOAD}`);
    }
    await waitUntil(() => latencies.length >= total * FANOUT_MEMBERS, { timeoutMs: 30_000, what: 'every delivery' });
    const p50 = percentileOf(latencies, 0.5);
    const p99 = percentileOf(latencies, 0.99);
    console.log(`\nchat fan-out: ${total} posts at ${FANOUT_RATE_PER_S}/s into a room of ${FANOUT_MEMBERS} members (${fmt(latencies.length)} deliveries)`);
    console.log(`post → delivery   p50 ${p50.toFixed(2)} ms   p99 ${p99.toFixed(2)} ms   max ${Math.max(...latencies).toFixed(2)} ms   target p99 ≤ 20 ms: ${p99 <= 20 ? 'PASS' : 'MISS'}`);

    // Claim round trip: claim then release, one member, against SET NX PX + DEL.
    const claimer = members[1] as BenchMember;
    const claimMs: number[] = [];
    for (let i = 0; i < CLAIM_ROUNDS; i += 1) {
      const t0 = performance.now();
      const claimed = await claimer.request({ claim: { room: 'fleet', resource: 'bench-floor', ttlMs: 30_000 } });
      claimMs.push(performance.now() - t0);
      if (!claimed.claimed?.ok) throw new Error(`claim failed: ${claimed.error?.code ?? claimed.claimed?.code ?? ''}`);
      await claimer.request({ release: { room: 'fleet', resource: 'bench-floor', fence: claimed.claimed.fence } });
    }
    const rawMs: number[] = [];
    for (let i = 0; i < CLAIM_ROUNDS; i += 1) {
      const t0 = performance.now();
      await raw.set('bench:claim', 'x', 'PX', 30_000, 'NX');
      rawMs.push(performance.now() - t0);
      await raw.del('bench:claim');
    }
    console.log(`\nchat claim round trip (${CLAIM_ROUNDS} claims, each released): p50 ${percentileOf(claimMs, 0.5).toFixed(2)} ms  p99 ${percentileOf(claimMs, 0.99).toFixed(2)} ms;`
      + ` raw SET NX PX p50 ${percentileOf(rawMs, 0.5).toFixed(3)} ms  p99 ${percentileOf(rawMs, 0.99).toFixed(3)} ms`);
  } catch (err) {
    failed = true;
    console.error(err);
  } finally {
    await Promise.all(members.map((m) => m.close()));
    raw.disconnect();
    await orchestrator.stop();
    await orchestratorDir.remove();
    await redisServer.stop();
  }
  return failed ? EXIT_FAILURE : EXIT_OK;
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(err);
  process.exit(EXIT_FAILURE);
});
