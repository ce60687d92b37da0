#!/usr/bin/env node
// The `orchestrator` executable: the only module that reads argv, env and signals.
import * as grpc from '@grpc/grpc-js';
import { exitWhenIdle, onOutputGone, shutdownRequested } from '@conclave/common';
import { createControlClient } from '@conclave/protocol';
import { controlCallsFromClient } from './cli/control-calls.js';
import { runOrchestratorCli } from './cli/orchestrator-program.js';

// grpc-js writes its own errors to stderr (a failed bind as `E No address added…`); every one
// that matters reaches the operator as a coded line already. GRPC_VERBOSITY still turns them on.
if (process.env.GRPC_VERBOSITY === undefined) grpc.setLogVerbosity(grpc.logVerbosity.NONE);

// `orchestrator nodes list --json | head -3`: once the reader has gone, end quietly. `start` has
// nothing more to say to a closed terminal either; it goes on (SIGHUP shuts it down in order).
const isStart = process.argv[2] === 'start';
onOutputGone([process.stdout, process.stderr], () => {
  if (!isStart) process.exit(process.exitCode ?? 0);
});

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
  // Started by another process with an IPC channel (tests, a supervisor): its end is a shutdown request too.
  shutdownSignal: () => shutdownRequested(),
  interruptSignal: () => shutdownRequested(),
});
exitWhenIdle(exitCode);
