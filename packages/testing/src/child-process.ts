import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ChildHandle {
  readonly process: ChildProcess;
  /** Every line the child wrote to stdout and stderr, in order. */
  readonly lines: string[];
  /** Resolves with the first line (already written or still to come) that matches. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

/** Runs `node script args…` with both output streams captured line by line. */
export function spawnNode(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  /** Called with each output line as it arrives (e.g. to pass a child's logs through). */
  onOutputLine?: (line: string) => void,
): ChildHandle {
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, ...env },
    // The IPC channel closes when this process dies, however it dies: the executables take that
    // as a shutdown request (parentGone in @conclave/common), so no child outlives its parent.
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    // A process group of its own: Ctrl-C in a terminal reaches only the parent, which then
    // stops its children once, cleanly, instead of each child getting the signal twice.
    detached: true,
  });
  // An exit that runs hooks also stops it at once.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));
  const lines: string[] = [];
  const waiters = new Set<{ pattern: RegExp; resolve: (m: RegExpMatchArray) => void }>();
  const onLine = (line: string) => {
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
  };
  if (child.stdout) createInterface({ input: child.stdout }).on('line', onLine);
  if (child.stderr) createInterface({ input: child.stderr }).on('line', onLine);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  return {
    process: child,
    lines,
    exited,
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
        void exited.then((code) => {
          if (!waiters.has(waiter)) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          reject(new Error(`process exited (${code}) before ${pattern}; last lines:\n${lines.slice(-15).join('\n')}`));
        });
      });
    },
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
