#!/usr/bin/env node
// The `orchestrator` executable: the only module that reads argv, env and signals.
import { createControlClient } from '@conclave/protocol';
import { controlCallsFromClient } from './cli/control-calls.js';
import { runOrchestratorCli } from './cli/orchestrator-program.js';

/** How long a finished CLI waits for open handles (gRPC channels, log files) before it exits anyway. */
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

const exitCode = await runOrchestratorCli(process.argv.slice(2), {
  env: process.env,
  io: { stdout: process.stdout, stderr: process.stderr },
  connect: (address, { operatorToken, tlsCa }) =>
    controlCallsFromClient(
      createControlClient(address, {
        ...(operatorToken !== undefined ? { operatorToken } : {}),
        ...(tlsCa !== undefined ? { tls: { ca: tlsCa } } : {}),
      }),
      { address },
    ),
  // Loaded only by `start`: client commands need neither BullMQ nor onnxruntime.
  startOrchestrator: async (options) => (await import('./orchestrator.js')).startOrchestrator(options),
  shutdownSignal,
});
process.exitCode = exitCode;
setTimeout(() => process.exit(exitCode), EXIT_GRACE_MS).unref();
