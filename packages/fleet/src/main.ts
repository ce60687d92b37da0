#!/usr/bin/env node
// `pnpm start`: the local fleet. The only module here that reads argv and signals.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  acquireDataDirLock,
  LogTap,
  createLogger,
  describeStartupFailure,
  describeUsageError,
  exitWhenIdle,
  onOutputGone,
  runService,
  shutdownSignal,
  type DataDirLock,
  type ReadinessOf,
} from '@conclave/common';
import { startLocalFleet } from './local-fleet.js';
import { FLEET_VERSION } from './version.js';

/** How long the fleet may take to stop: each child gets 5 s after SIGTERM, then the orchestrator and Redis theirs. */
const FLEET_CLOSE_TIMEOUT_MS = 30_000;

const print = (line: string) => process.stdout.write(`${line}\n`);
const fail = (line: string, exitCode: number): never => {
  process.stderr.write(`${line}\n`);
  process.exit(exitCode);
};

// A closed terminal must not crash the fleet half-way; SIGHUP shuts it down in order.
onOutputGone([process.stdout, process.stderr], () => undefined);

const FLEET_OPTIONS = {
  'data-dir': { type: 'string', default: '.conclave/local' },
  nodes: { type: 'string', default: '3' },
  slots: { type: 'string', default: '2' },
  'grpc-port': { type: 'string', default: '7400' },
  'http-port': { type: 'string', default: '7401' },
  'demo-jobs': { type: 'string', default: '6' },
  'model-server-port': { type: 'string', default: '7402' },
  'log-level': { type: 'string', default: 'info' },
  version: { type: 'boolean', default: false },
} as const;

/**
 * `--model-server-port -1` as two words: node's parseArgs takes a value that starts with a dash for
 * an option of its own and refuses it, so a negative number is joined to its flag first.
 */
function joinNegativeValues(argv: readonly string[]): string[] {
  const joined: string[] = [];
  for (const arg of argv) {
    const previous = joined.at(-1);
    if (/^-\d+$/.test(arg) && previous?.startsWith('--') === true && !previous.includes('=')) joined[joined.length - 1] = `${previous}=${arg}`;
    else joined.push(arg);
  }
  return joined;
}

function parseFleetArgs() {
  try {
    return parseArgs({ args: joinNegativeValues(process.argv.slice(2)), options: FLEET_OPTIONS }).values;
  } catch (err) {
    const usage = describeUsageError(err instanceof Error ? err.message : String(err), 'ORCH-STATE-705');
    return fail(usage.line, usage.exitCode);
  }
}

const values = parseFleetArgs();
if (values.version) {
  print(FLEET_VERSION);
  process.exit(0);
}
const dataDir = resolve(values['data-dir']);
/** A second `pnpm start` in the same checkout is refused here, naming the first. */
async function lockFleetDir(): Promise<DataDirLock> {
  try {
    return await acquireDataDirLock({ dir: dataDir, role: 'local fleet', errorCode: 'ORCH-STATE-704', unusableCode: 'ORCH-STATE-706' });
  } catch (err) {
    const failure = describeStartupFailure(err, 'ORCH-STATE-707');
    return fail(failure.line, failure.exitCode);
  }
}

const lock = await lockFleetDir();
// The orchestrator's own records go into the fleet log store from here, at the console's level.
const logTap = new LogTap(values['log-level'] as 'info');
const logger = createLogger({
  prefix: 'ORCH', level: values['log-level'] as 'info', console: true, file: { dir: resolve(dataDir, 'orchestrator', 'logs') }, tap: logTap,
});

const exitCode = await runService({
  start: async () => {
    const fleet = await startLocalFleet({
      dataDir, logger, logTap, print,
      nodes: Number(values.nodes), slots: Number(values.slots), demoJobs: Number(values['demo-jobs']),
      grpcPort: Number(values['grpc-port']), httpPort: Number(values['http-port']),
      modelServerPort: Number(values['model-server-port']),
    });
    print(
      `local fleet running: orchestrator ${fleet.orchestrator.address}, http :${fleet.orchestrator.httpPort}. ` +
      `Try \`pnpm orchestrator nodes list --address ${fleet.orchestrator.address}\`. Ctrl-C stops everything.`,
    );
    // After the human line, one a parent can rely on: everything is up and the demo jobs are done.
    const readiness: ReadinessOf<'local-fleet'> = {
      role: 'local-fleet', grpc: fleet.orchestrator.address,
      httpPort: fleet.orchestrator.httpPort >= 0 ? fleet.orchestrator.httpPort : null,
      nodes: Number(values.nodes), modelServer: fleet.modelServerUrl ?? null,
    };
    return { ready: Promise.resolve(readiness), close: () => fleet.close() };
  },
  // Started from a terminal, never with an IPC channel: only a signal stops it.
  shutdownRequested: () => shutdownSignal(),
  onShutdownRequested: (signal) => print(`${signal}: stopping the local fleet (nodes, model server, orchestrator, Redis)`),
  logger,
  stdout: process.stdout,
  stderr: process.stderr,
  fallbackCode: 'ORCH-STATE-707',
  closeTimeoutMs: FLEET_CLOSE_TIMEOUT_MS,
});
await logger.close();
await lock.release();
exitWhenIdle(exitCode);
