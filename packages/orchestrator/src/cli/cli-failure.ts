import { isConclaveError } from '@conclave/common';
import { ControlCallError } from './control-calls.js';
import { EXIT_FAILURE, EXIT_USAGE } from './exit-codes.js';

export interface CliFailure {
  /** One line for stderr, starting with the catalog code when there is one. */
  readonly line: string;
  readonly exitCode: number;
}

/**
 * What the operator sees when a command fails, and the exit code.
 * - a local ConclaveError: `<code> <message>: <detail> — <recovery>`; exit 2
 *   for bad input (INVALID_ARGUMENT: nothing was sent), 1 otherwise;
 * - an error from the orchestrator: `<code> <details>` as the server sent it; exit 1;
 * - anything else: `error: <message>`; exit 1.
 */
export function describeFailure(err: unknown): CliFailure {
  if (isConclaveError(err)) {
    return {
      line: `${err.code} ${err.message} — ${err.entry.recovery}`,
      exitCode: err.entry.status === 'INVALID_ARGUMENT' ? EXIT_USAGE : EXIT_FAILURE,
    };
  }
  if (err instanceof ControlCallError) return { line: err.message, exitCode: EXIT_FAILURE };
  const message = err instanceof Error ? err.message : String(err);
  return { line: `error: ${message}`, exitCode: EXIT_FAILURE };
}
