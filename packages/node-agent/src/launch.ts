import { fileURLToPath } from 'node:url';
import { toCliFlags } from '@conclave/common';

/**
 * The `node-agent` executable, for `node NODE_AGENT_MAIN start …` (what bin/node-agent.js and the
 * deploy units run). `../dist/` from here is the same file from src/ (under vitest) and from
 * dist/, both one level below the package.
 */
export const NODE_AGENT_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** `node-agent start` flags; those left out take the CLI's defaults (docs/cli.md). */
export interface NodeAgentStartArgs {
  dataDir: string;
  /** Absent: the address in the join string, kept in the data dir. */
  orchestrator?: string;
  /**
   * Only until the node has enrolled. Visible to every user in `ps`: a parent process should
   * pass it in the environment instead (nodeAgentJoinEnv).
   */
  join?: string;
  name?: string;
  slots?: number;
  httpHost?: string;
  /** 0 = any free port, -1 = off. */
  httpPort?: number;
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
}

/** The argv (after the script) of `node-agent start`. */
export function nodeAgentStartArgv(args: NodeAgentStartArgs): string[] {
  return ['start', ...toCliFlags(args)];
}

/** The variable `node-agent start` reads a join string from (docs/configuration.md). */
export const NODE_AGENT_JOIN_ENV = 'CONCLAVE_JOIN';

/**
 * The environment that hands a child `node-agent start` its join string, out of `ps`'s sight.
 * Without one it unsets the variable: a joined node given a parent's join string would spend it.
 */
export function nodeAgentJoinEnv(join: string | undefined): Record<string, string | undefined> {
  return { [NODE_AGENT_JOIN_ENV]: join };
}
