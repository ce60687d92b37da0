import { EXIT_FORCED } from './exit-codes.js';
import { parentGone } from './parent-gone.js';

/**
 * The signals that mean "shut down in order". SIGHUP is among them because closing the terminal
 * sends it, and without a handler Node dies on the spot, leaving its children (an embedded
 * redis-server, node agents) behind.
 */
export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * A repeat of the signal within this time is the same request arriving twice (a terminal sends
 * Ctrl-C to the whole foreground group, and `pnpm` forwards it once more), not an operator asking
 * to force the exit.
 */
export const DUPLICATE_SIGNAL_WINDOW_MS = 500;

/**
 * Resolves with the first shutdown signal. A second one, later than DUPLICATE_SIGNAL_WINDOW_MS,
 * exits at once with 130, for a shutdown that hangs.
 */
export function shutdownSignal(stderr: NodeJS.WritableStream = process.stderr): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let firstAtMs: number | undefined;
    const onSignal = (signal: NodeJS.Signals): void => {
      const now = Date.now();
      if (firstAtMs === undefined) {
        firstAtMs = now;
        resolve(signal);
        return;
      }
      if (now - firstAtMs < DUPLICATE_SIGNAL_WINDOW_MS) return;
      stderr.write(`${signal} again: exiting without a clean shutdown\n`);
      process.exit(EXIT_FORCED);
    };
    for (const signal of SHUTDOWN_SIGNALS) process.on(signal, onSignal);
  });
}

/**
 * Resolves with the first request to shut down: a shutdown signal (its name) or, for a process
 * started with an IPC channel, its parent gone ('parent gone').
 */
export function shutdownRequested(stderr: NodeJS.WritableStream = process.stderr): Promise<string> {
  return Promise.race([shutdownSignal(stderr), parentGone()]);
}
