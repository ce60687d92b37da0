#!/usr/bin/env node
// The `node-agent` executable: the only module that reads argv, env and signals.
import { formatReadinessLine, onOutputGone, parentGone, shutdownSignal } from '@conclave/common';
import { runNodeAgentCli } from './cli/node-agent-program.js';
import { onFirstConnection } from './first-connection.js';

/** How long a finished CLI waits for open handles (sockets, log files) before it exits anyway. */
const EXIT_GRACE_MS = 2_000;

// A closed terminal or pipe must not crash a running agent; SIGHUP shuts it down in order.
onOutputGone([process.stdout, process.stderr], () => undefined);

const exitCode = await runNodeAgentCli(process.argv.slice(2), {
  env: process.env,
  io: { stdout: process.stdout, stderr: process.stderr },
  startNodeAgent: async (options) => {
    const agent = await (await import('./node-agent.js')).startNodeAgent(options);
    // Ready once its first session is up (enrolled, approved, registered): it can take jobs.
    const stopWatching = onFirstConnection(agent, () => {
      process.stdout.write(formatReadinessLine({ role: 'node-agent', node: agent.nodeId, httpPort: agent.httpPort >= 0 ? agent.httpPort : null }));
    });
    return {
      nodeId: agent.nodeId,
      fatal: agent.fatal,
      close: () => {
        stopWatching();
        return agent.close();
      },
    };
  },
  // Started by a local fleet with an IPC channel: its end is a shutdown request like a signal.
  shutdownSignal: () => Promise.race([shutdownSignal(), parentGone()]),
});
process.exitCode = exitCode;
setTimeout(() => process.exit(exitCode), EXIT_GRACE_MS).unref();
