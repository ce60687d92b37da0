#!/usr/bin/env node
// The `node-agent` executable: the only module that reads argv, env and signals.
import { exitWhenIdle, onOutputGone, shutdownRequested } from '@conclave/common';
import { runNodeAgentCli } from './cli/node-agent-program.js';

// A closed terminal or pipe must not crash a running agent; SIGHUP shuts it down in order.
onOutputGone([process.stdout, process.stderr], () => undefined);

const exitCode = await runNodeAgentCli(process.argv.slice(2), {
  env: process.env,
  io: { stdout: process.stdout, stderr: process.stderr },
  startNodeAgent: async (options) => (await import('./node-agent.js')).startNodeAgent(options),
  // Started by a local fleet with an IPC channel: its end is a shutdown request like a signal.
  shutdownSignal: () => shutdownRequested(),
});
exitWhenIdle(exitCode);
