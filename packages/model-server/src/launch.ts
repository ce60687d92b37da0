import { fileURLToPath } from 'node:url';
import { toCliFlags } from '@conclave/common';

/**
 * The `model-server` executable, for `node MODEL_SERVER_MAIN start …` (what bin/model-server.js
 * and the deploy units run). `../dist/` from here is the same file from src/ (under vitest) and
 * from dist/, both one level below the package.
 */
export const MODEL_SERVER_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** `model-server start` flags; those left out take the CLI's defaults (docs/model-server.md). */
export interface ModelServerStartArgs {
  /** A model directory; absent: the embedded demo model. */
  model?: string;
  host?: string;
  /** 0 = any free port: the readiness line says which. */
  port?: number;
  concurrency?: number;
  queueLimit?: number;
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Also join this orchestrator as a text-generation node. */
  orchestrator?: string;
  dataDir?: string;
}

/**
 * Where `model-server start` reads a join string besides --join: the environment, which `ps`
 * does not show to other users (the argv does).
 */
export const MODEL_SERVER_JOIN_ENV = 'CONCLAVE_JOIN';

/** The argv (after the script) of `model-server start`; the join string goes in `modelServerJoinEnv`. */
export function modelServerStartArgv(args: ModelServerStartArgs): string[] {
  return ['start', ...toCliFlags(args)];
}

/** The environment that hands `model-server start` its join string (only until it has enrolled). */
export function modelServerJoinEnv(join: string | undefined): Record<string, string | undefined> {
  return { [MODEL_SERVER_JOIN_ENV]: join };
}
