import { ConclaveError, isConclaveError, toConclaveError } from './errors/conclave-error.js';
import type { ErrorCode } from './errors/catalog/index.js';
import { EXIT_FAILURE, EXIT_USAGE } from './exit-codes.js';

export interface CliFailure {
  /** One line for stderr, starting with the catalog code. */
  readonly line: string;
  readonly exitCode: number;
}

/**
 * `<code> <message>: <detail> — <recovery>` on one line (a multi-line detail, such as a tail of
 * redis.log, is joined with ` | `), and its exit code: 2 when the catalog calls it bad input
 * (INVALID_ARGUMENT: nothing was started or sent), 1 otherwise.
 */
export function describeCodedFailure(err: ConclaveError): CliFailure {
  return {
    line: oneLine(`${err.code} ${err.message} — ${err.entry.recovery}`),
    exitCode: err.entry.status === 'INVALID_ARGUMENT' ? EXIT_USAGE : EXIT_FAILURE,
  };
}

/**
 * Any failure of an executable, coded: a ConclaveError as it is, anything else under
 * `fallbackCode` (the executable's "failed to start") with its message as the detail.
 */
export function describeStartupFailure(err: unknown, fallbackCode: ErrorCode): CliFailure {
  return describeCodedFailure(isConclaveError(err) ? err : toConclaveError(err, fallbackCode));
}

/**
 * Commander's own parse errors (`error: unknown option '--bogus'`), under the executable's
 * "command line not understood" code; always a usage error.
 */
export function describeUsageError(commanderMessage: string, code: ErrorCode): CliFailure {
  const detail = commanderMessage.replace(/^error:\s*/i, '').trim();
  return { ...describeCodedFailure(new ConclaveError(code, { detail })), exitCode: EXIT_USAGE };
}

/** Collapses line breaks so that a failure is exactly one line on stderr. */
export function oneLine(text: string): string {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .join(' | ');
}

/** Errors a write raises when its reader has gone: `… | head` exited, or the terminal closed. */
const OUTPUT_GONE = new Set(['EPIPE', 'EIO', 'ECONNRESET', 'ERR_STREAM_DESTROYED']);

/**
 * Calls `onGone` when a write to one of `streams` fails because nobody reads it any more, instead
 * of the uncaught EPIPE that would otherwise crash the process with a stack trace. Other stream
 * errors are re-thrown as before.
 */
export function onOutputGone(streams: readonly NodeJS.WritableStream[], onGone: (stream: NodeJS.WritableStream) => void): void {
  for (const stream of streams) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== undefined && OUTPUT_GONE.has(err.code)) onGone(stream);
      else throw err;
    });
  }
}
