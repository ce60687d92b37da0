import { spawnChild } from '@conclave/common';
import type { SpawnedChild } from '@conclave/common';

export interface ChildHandle extends SpawnedChild {
  /** Every line the child wrote to stdout and stderr, in order, except its readiness line. */
  readonly lines: string[];
  /** Resolves with the first line (already written or still to come) that matches. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/**
 * Runs `node script args…` as the fleet runs its children (spawnChild: tied to this process,
 * readiness from its readiness line), with every output line kept for assertions.
 */
export function spawnNode(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  /** Called with each output line as it arrives (e.g. to pass a child's logs through). */
  onOutputLine?: (line: string) => void,
  /** Node's own flags, before the script (a benchmark's `--cpu-prof`). */
  nodeArgs?: string[],
): ChildHandle {
  const lines: string[] = [];
  const waiters = new Set<{ pattern: RegExp; resolve: (m: RegExpMatchArray) => void }>();
  const child = spawnChild(script, args, {
    env,
    ...(nodeArgs ? { nodeArgs } : {}),
    onOutputLine: (line) => {
      lines.push(line);
      onOutputLine?.(line);
      if (process.env.CONCLAVE_TEST_ECHO) process.stderr.write(`${line}\n`);
      for (const waiter of waiters) {
        const match = line.match(waiter.pattern);
        if (match) {
          waiters.delete(waiter);
          waiter.resolve(match);
        }
      }
    },
  });

  return {
    process: child.process,
    exited: child.exited,
    // Neither uses `this`: spawnChild's handle is closures.
    ready: child.ready,
    stop: child.stop,
    lines,
    waitFor(pattern, timeoutMs = 20_000) {
      for (const line of lines) {
        const match = line.match(pattern);
        if (match) return Promise.resolve(match);
      }
      return new Promise((resolve, reject) => {
        const waiter = { pattern, resolve: (m: RegExpMatchArray) => { clearTimeout(timer); resolve(m); } };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}; last lines:\n${lines.slice(-15).join('\n')}`));
        }, timeoutMs);
        waiters.add(waiter);
        void child.exited.then((code) => {
          if (!waiters.has(waiter)) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          reject(new Error(`process exited (${code}) before ${pattern}; last lines:\n${lines.slice(-15).join('\n')}`));
        });
      });
    },
  };
}
