#!/usr/bin/env node
// `pnpm start`: the local fleet. The only module here that reads argv and signals.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger, isConclaveError } from '@conclave/common';
import { startLocalFleet } from './local-fleet.js';

const { values } = parseArgs({
  options: {
    'data-dir': { type: 'string', default: '.conclave/local' },
    nodes: { type: 'string', default: '3' },
    slots: { type: 'string', default: '2' },
    'grpc-port': { type: 'string', default: '7400' },
    'http-port': { type: 'string', default: '7401' },
    'demo-jobs': { type: 'string', default: '6' },
    'model-server-port': { type: 'string', default: '7402' },
    'log-level': { type: 'string', default: 'info' },
  },
});

const dataDir = resolve(values['data-dir']);
const logger = createLogger({
  prefix: 'ORCH', level: values['log-level'] as 'info', console: true, file: { dir: resolve(dataDir, 'orchestrator', 'logs') },
});
const print = (line: string) => process.stdout.write(`${line}\n`);

try {
  const fleet = await startLocalFleet({
    dataDir, logger, print,
    nodes: Number(values.nodes), slots: Number(values.slots), demoJobs: Number(values['demo-jobs']),
    grpcPort: Number(values['grpc-port']), httpPort: Number(values['http-port']),
    modelServerPort: Number(values['model-server-port']),
  });
  print(
    `local fleet running: orchestrator ${fleet.orchestrator.address}, http :${fleet.orchestrator.httpPort}. ` +
    `Try \`pnpm orchestrator nodes list --address ${fleet.orchestrator.address}\`. Ctrl-C stops everything.`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(130);
    stopping = true;
    print(`${signal}: stopping the local fleet`);
    fleet.close().then(
      async () => {
        await logger.close();
        process.exit(0);
      },
      (err: unknown) => {
        process.stderr.write(`shutdown failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
} catch (err) {
  process.stderr.write(`${isConclaveError(err) ? `${err.code} ${err.message}\n  recovery: ${err.entry.recovery}` : String(err)}\n`);
  await logger.close();
  process.exit(1);
}
