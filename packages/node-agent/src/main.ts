#!/usr/bin/env node
// The `node-agent` executable: the only module that reads argv, env and signals.
import { runNodeAgentCli } from './cli/node-agent-program.js';

/** How long a finished CLI waits for open handles (sockets, log files) before it exits anyway. */
const EXIT_GRACE_MS = 2_000;

/** Exit code of a second signal during shutdown: 128 + SIGINT, as shells report it. */
const EXIT_FORCED = 130;

/** Resolves on the first SIGINT/SIGTERM; a second one exits at once, for a shutdown that hangs. */
function shutdownSignal(): Promise<string> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (received) {
        process.stderr.write(`${signal} again: exiting without a clean shutdown\n`);
        process.exit(EXIT_FORCED);
      }
      received = true;
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

const exitCode = await runNodeAgentCli(process.argv.slice(2), {
  env: process.env,
  io: { stdout: process.stdout, stderr: process.stderr },
  startNodeAgent: async (options) => (await import('./node-agent.js')).startNodeAgent(options),
  shutdownSignal,
});
process.exitCode = exitCode;
setTimeout(() => process.exit(exitCode), EXIT_GRACE_MS).unref();
