#!/usr/bin/env node
// `pnpm bench <scenario> [args…]`: runs one benchmark's built script with node, args passed
// through. Each benchmark prints a table with its baseline measured in the same run.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = new URL('..', import.meta.url);

const SCENARIOS = {
  dispatch: {
    script: 'packages/orchestrator/dist/bench/dispatch-bench.js',
    about: 'no-op jobs through orchestrator + nodes vs a raw BullMQ worker',
  },
  inference: {
    script: 'packages/node-agent/dist/bench/inference-bench.js',
    about: 'a model run through the node (worker thread, full job) vs session.run in process',
  },
  handshake: {
    script: 'packages/protocol/dist/bench/handshake-bench.js',
    about: 'secure session handshake',
  },
  textgen: {
    script: 'packages/model-server/dist/bench/textgen-bench.js',
    about: 'text generation tokens/s vs a bare generation loop',
  },
  chat: {
    script: 'packages/testing/dist/bench/chat-bench.js',
    about: 'sequenced chat messages/s vs raw XADD, fan-out to 100 members, claim round trip',
  },
  logs: {
    script: 'packages/testing/dist/bench/logs-bench.js',
    about: "fleet logs: a node's log call → `orchestrator logs -f`, and the orchestrator's CPU per 1,000 records vs a local log file",
  },
  hailo: {
    script: 'packages/testing/dist/bench/hailo-bench.js',
    about: 'what the Hailo shim adds per 640×640×3 frame (socket, sidecar, post.onnx) vs HailoRT called in process (fake HailoRT)',
  },
  faults: {
    script: 'packages/testing/dist/bench/faults-bench.js',
    about: 'failure detection and recovery (node crash/silence, orchestrator restart) vs the targets',
  },
};

const scriptPath = (scenario) => fileURLToPath(new URL(scenario.script, ROOT));

function usage() {
  const lines = Object.entries(SCENARIOS).map(([name, scenario]) =>
    `  ${name.padEnd(10)} ${scenario.about}${existsSync(scriptPath(scenario)) ? '' : ' (not built yet)'}`);
  return `usage: pnpm bench <scenario> [args…]\nscenarios:\n${lines.join('\n')}`;
}

const [name, ...args] = process.argv.slice(2);
if (name === '--help' || name === '-h') {
  console.log(usage());
  process.exit(0);
}
if (!name || !Object.hasOwn(SCENARIOS, name)) {
  if (name) console.error(`unknown scenario "${name}"`);
  console.error(usage());
  process.exit(2);
}

const scenario = SCENARIOS[name];
const script = scriptPath(scenario);
if (!existsSync(script)) {
  console.error(`bench ${name}: ${scenario.script} is not built yet`);
  process.exit(2);
}

const child = spawn(process.execPath, [...process.execArgv, script, ...args], { stdio: 'inherit', cwd: fileURLToPath(ROOT) });
// The child shares the terminal and gets Ctrl-C itself; forward what only reaches us.
process.on('SIGTERM', () => child.kill('SIGTERM'));
process.on('SIGINT', () => undefined);
child.on('exit', (code, signal) => {
  if (signal) process.kill(process.pid, signal);
  else process.exit(code ?? 1);
});
