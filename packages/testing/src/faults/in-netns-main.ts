// `node in-netns-main.js <netns> <script> [args…]`: runs `node <script> args…` inside network
// namespace <netns> (`ip netns exec`, root only), so that the harness can spawn it as it spawns
// any Conclave executable (spawnNode needs a Node.js script): stdout and stderr pass through,
// readiness line included, and the child's own IPC channel to this process stands for ours.
import { spawn } from 'node:child_process';

const [netns, script, ...args] = process.argv.slice(2);
if (!netns || !script) {
  process.stderr.write('usage: in-netns-main.js <netns> <script> [args…]\n');
  process.exit(2);
}

const child = spawn('ip', ['netns', 'exec', netns, process.execPath, script, ...args], {
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
for (const signal of ['SIGTERM', 'SIGINT', 'SIGCONT'] as const) process.on(signal, () => child.kill(signal));
// Our parent gone (its IPC channel closed): the child's channel closes with us, which the agent
// takes as a shutdown request; SIGTERM says the same at once.
process.on('disconnect', () => child.kill('SIGTERM'));
child.on('error', (err) => {
  process.stderr.write(`in-netns: ${err.message}\n`);
  process.exit(1);
});
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
