import { fileURLToPath } from 'node:url';
import { toCliFlags } from '@conclave/common';

/**
 * The `orchestrator` executable, for `node ORCHESTRATOR_MAIN start …` (what bin/orchestrator.js
 * and the deploy units run). `../dist/` from here is the same file from src/ (under vitest) and
 * from dist/, both one level below the package.
 */
export const ORCHESTRATOR_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** `orchestrator start` flags; those left out take the CLI's defaults (docs/cli.md). */
export interface OrchestratorStartArgs {
  dataDir: string;
  /** Absent: an embedded redis-server. */
  redisUrl?: string;
  grpcHost?: string;
  /** 0 = any free port: the readiness line says which. */
  grpcPort?: number;
  httpHost?: string;
  /** 0 = any free port, -1 = off. */
  httpPort?: number;
}

/** The argv (after the script) of `orchestrator start`. */
export function orchestratorStartArgv(args: OrchestratorStartArgs): string[] {
  return ['start', ...toCliFlags(args)];
}
