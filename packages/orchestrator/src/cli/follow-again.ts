import { ConclaveError } from '@conclave/common';
import type { CliIo } from './cli-io.js';
import { ControlCallError, type RoomFollow } from './control-calls.js';

/** A follow after a lost orchestrator tries again from 250 ms, doubling, at most every 2 s. */
const FOLLOW_RETRY_BASE_MS = 250;
const FOLLOW_RETRY_CAP_MS = 2_000;

export interface FollowAgainOptions {
  /** Without it the first end (or error) is the last. */
  follow: boolean;
  /** Resolves when the operator asks to stop (SIGINT, SIGTERM): the follow ends, without an error. */
  interrupted?: Promise<unknown>;
  io: CliIo;
  /** Opens the call, from where the last one stopped. */
  open: () => RoomFollow;
  /** Where the next call starts, for the line that says it follows again (`from #17`). */
  resumeAt: () => string;
}

/** The orchestrator went away (a restart, a dropped connection, not up yet): what a follow waits out. */
export function orchestratorAway(err: unknown): boolean {
  if (err instanceof ControlCallError) return err.status === 'UNAVAILABLE';
  return err instanceof ConclaveError && err.entry.status === 'UNAVAILABLE';
}

/**
 * Runs a streaming call until it ends; with `follow`, opens it again whenever the orchestrator
 * went away (`chat tail -f`, `logs -f`), saying so on stderr. Any other error ends it, as does the
 * operator's interrupt.
 */
export async function followAgain(o: FollowAgainOptions): Promise<void> {
  let interrupted = false;
  let cancel: () => void = () => undefined;
  if (o.follow && o.interrupted) {
    void o.interrupted.then(() => {
      interrupted = true;
      cancel();
    });
  }
  for (let attempt = 0; ; attempt += 1) {
    const call = o.open();
    cancel = () => call.cancel();
    if (interrupted) call.cancel();
    try {
      await call.done;
      return;
    } catch (err) {
      if (!o.follow || interrupted || !orchestratorAway(err)) throw err;
      const delayMs = Math.min(FOLLOW_RETRY_CAP_MS, FOLLOW_RETRY_BASE_MS * 2 ** Math.min(attempt, 4));
      o.io.stderr.write(`${(err as Error).message}: following again ${o.resumeAt()} in ${delayMs} ms\n`);
      await Promise.race([new Promise((resolve) => setTimeout(resolve, delayMs)), o.interrupted ?? new Promise(() => undefined)]);
      if (interrupted) return;
    }
  }
}
