import { EXIT_FAILURE, describeCodedFailure, describeStartupFailure, isConclaveError, type CliFailure } from '@conclave/common';
import { ControlCallError } from './control-calls.js';

export type { CliFailure } from '@conclave/common';

/**
 * What the operator sees when a command fails, and the exit code.
 * - a local ConclaveError: `<code> <message>: <detail> — <recovery>`; exit 2
 *   for bad input (INVALID_ARGUMENT: nothing was sent), 1 otherwise;
 * - an error from the orchestrator: `<code> <details>` as the server sent it; exit 1;
 * - anything else: under ORCH-STATE-707 with its message; exit 1.
 */
export function describeFailure(err: unknown): CliFailure {
  if (isConclaveError(err)) return describeCodedFailure(err);
  if (err instanceof ControlCallError) return { line: err.message, exitCode: EXIT_FAILURE };
  return describeStartupFailure(err, 'ORCH-STATE-707');
}
