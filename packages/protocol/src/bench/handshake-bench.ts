/**
 * `node packages/protocol/dist/bench/handshake-bench.js [--seconds 2]`
 *
 * Handshakes per second on the orchestrator (only the responder's work is timed) with the
 * tweetnacl reference and with the node:crypto fast path, and sealed-frame throughput for
 * 1 KiB and 1 MiB frames as a ratio to unsealed frames (the same framing and copies, no
 * crypto) measured in the same run. Absolute numbers on shared machines are noise; the
 * ratios are the figures that matter (DESIGN.md, "Performance").
 */
import {
  createInitiator,
  createResponder,
  createSealedChannel,
  fingerprint,
  identityFromSeed,
  MemoryEnrollment,
  nodeCryptoProvider,
  nodeIdFromPublicKey,
  PinSet,
  tweetnaclProvider,
  type CryptoProvider,
  type SessionKeys,
} from '../secure/index.js';

const secondsArg = process.argv.indexOf('--seconds');
const BUDGET_MS = (secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 2) * 1000;

const node = identityFromSeed(new Uint8Array(32).fill(1));
const orchestrator = identityFromSeed(new Uint8Array(32).fill(2));
const registry = new MemoryEnrollment();
registry.setStatus(nodeIdFromPublicKey(node.publicKey), 'accepted', node.publicKey);

interface HandshakeFigures {
  handshakes: number;
  orchestratorMsPerHandshake: number;
  orchestratorPerSecond: number;
  nodeMsPerHandshake: number;
}

async function benchHandshakes(provider: CryptoProvider): Promise<HandshakeFigures> {
  const pins = new PinSet([fingerprint(orchestrator.publicKey)]);
  // CPU time, not wall time: on a shared machine the wall clock mostly measures the neighbours.
  const cpuMs = (since: NodeJS.CpuUsage) => {
    const used = process.cpuUsage(since);
    return (used.user + used.system) / 1000;
  };
  let orchestratorMs = 0;
  let nodeMs = 0;
  let handshakes = 0;
  const started = performance.now();
  while (performance.now() - started < BUDGET_MS || handshakes < 3) {
    let t = process.cpuUsage();
    const initiator = createInitiator({ identity: node, pins, provider });
    const hello = initiator.start();
    nodeMs += cpuMs(t);
    t = process.cpuUsage();
    const responder = createResponder({ identity: orchestrator, hooks: registry, provider });
    const response = await responder.next(hello);
    orchestratorMs += cpuMs(t);
    t = process.cpuUsage();
    const finish = await initiator.next(response.send as Uint8Array);
    nodeMs += cpuMs(t);
    t = process.cpuUsage();
    const result = await responder.next(finish.send as Uint8Array);
    orchestratorMs += cpuMs(t);
    if (!result.done) throw new Error(`handshake failed: ${result.error?.message}`);
    handshakes += 1;
  }
  return {
    handshakes,
    orchestratorMsPerHandshake: orchestratorMs / handshakes,
    orchestratorPerSecond: (handshakes * 1000) / orchestratorMs,
    nodeMsPerHandshake: nodeMs / handshakes,
  };
}

function keysFor(role: 'node' | 'orchestrator'): SessionKeys {
  const a = new Uint8Array(32).fill(3);
  const b = new Uint8Array(32).fill(4);
  return {
    role,
    sendKey: role === 'node' ? a : b,
    receiveKey: role === 'node' ? b : a,
    sessionId: 'bench',
    transcriptHash: new Uint8Array(64),
    peerPublicKey: new Uint8Array(32),
    peerId: 'bench',
  };
}

/** Bytes per CPU second through `step`, run for half the time budget. */
function throughput(bytes: number, step: () => void): number {
  let frames = 0;
  const started = performance.now();
  const cpu = process.cpuUsage();
  while (performance.now() - started < BUDGET_MS / 2 || frames < 3) {
    step();
    frames += 1;
  }
  const used = process.cpuUsage(cpu);
  return (frames * bytes * 1e6) / (used.user + used.system);
}

function benchFrames(bytes: number): { sealed: number; unsealed: number; ratio: number } {
  const payload = new Uint8Array(bytes).fill(7);
  const sender = createSealedChannel(keysFor('node'), { maxPlaintextBytes: bytes });
  const receiver = createSealedChannel(keysFor('orchestrator'), { maxPlaintextBytes: bytes });
  const sealed = throughput(bytes, () => {
    const opened = receiver.open(sender.seal(payload));
    if (opened.kind !== 'data' || opened.data.length !== bytes) throw new Error('bad frame');
  });
  // The baseline does what a frame costs without crypto: header plus a copy out and a copy in.
  let counter = 0;
  const unsealed = throughput(bytes, () => {
    const frame = new Uint8Array(9 + bytes);
    new DataView(frame.buffer).setBigUint64(0, BigInt(counter++));
    frame[8] = 1;
    frame.set(payload, 9);
    const data = frame.slice(9);
    if (data.length !== bytes) throw new Error('bad frame');
  });
  return { sealed, unsealed, ratio: sealed / unsealed };
}

const mib = (bytesPerSecond: number) => `${(bytesPerSecond / 1024 / 1024).toFixed(1)} MiB/s`;

const reference = await benchHandshakes(tweetnaclProvider);
const fast = await benchHandshakes(nodeCryptoProvider);
console.log(`handshakes per CPU second on the orchestrator (${BUDGET_MS / 1000} s per provider)`);
console.table({
  tweetnacl: {
    'handshakes/s': Math.round(reference.orchestratorPerSecond),
    'orch ms/handshake': reference.orchestratorMsPerHandshake.toFixed(2),
    'node ms/handshake': reference.nodeMsPerHandshake.toFixed(2),
    samples: reference.handshakes,
  },
  'node:crypto': {
    'handshakes/s': Math.round(fast.orchestratorPerSecond),
    'orch ms/handshake': fast.orchestratorMsPerHandshake.toFixed(2),
    'node ms/handshake': fast.nodeMsPerHandshake.toFixed(2),
    samples: fast.handshakes,
  },
});
console.log(`fast path speed-up on the orchestrator: ${(fast.orchestratorPerSecond / reference.orchestratorPerSecond).toFixed(1)}x`);

console.log('sealed frames (seal + open) vs unsealed frames, per CPU second, same run');
const rows: Record<string, Record<string, string>> = {};
for (const [label, bytes] of [['1 KiB', 1024], ['1 MiB', 1024 * 1024]] as const) {
  const figures = benchFrames(bytes);
  rows[label] = { sealed: mib(figures.sealed), unsealed: mib(figures.unsealed), 'sealed / unsealed': figures.ratio.toFixed(4) };
}
console.table(rows);
