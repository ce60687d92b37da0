import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { parseReadinessLine, type Readiness, type ReadinessOf, type ReadinessRole } from './readiness.js';

/** How long `ready()` waits unless told. */
export const DEFAULT_READY_TIMEOUT_MS = 20_000;
/** How long `stop()` waits after SIGTERM before SIGKILL, unless told. */
export const DEFAULT_STOP_GRACE_MS = 5_000;
/** Lines kept to explain a child that exited or timed out before it was ready. */
const RECENT_LINES = 15;
/**
 * How long after the exit the readiness wait still reads stdout: a line written just before the
 * exit may still be in the pipe, and a grandchild that inherited the pipe may hold it open.
 */
const STDOUT_DRAIN_AFTER_EXIT_MS = 1_000;

export interface SpawnChildOptions {
  /** Set over this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Node's own flags, before the script (`--cpu-prof`, `--import`). */
  nodeArgs?: readonly string[];
  /** Each line of stdout and stderr as it arrives, except the readiness line (see `ready`). */
  onOutputLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface SpawnedChild {
  readonly process: ChildProcess;
  /**
   * Resolves with the child's readiness line (READINESS_PREFIX on stdout) once it is out; rejects
   * when the child exits first, when the line is another role's or malformed, or after `timeoutMs`.
   */
  ready<R extends ReadinessRole>(role: R, timeoutMs?: number): Promise<ReadinessOf<R>>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

/**
 * Runs `node script args…` as a Conclave executable is run by another process: output read line
 * by line, readiness from its readiness line, and tied to this process's life.
 */
export function spawnChild(script: string, args: readonly string[], options: SpawnChildOptions = {}): SpawnedChild {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), script, ...args], {
    env: { ...process.env, ...options.env },
    // The IPC channel closes when this process dies, however it dies: the executables take that
    // as a shutdown request (parentGone), so no child outlives its parent.
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    // A process group of its own: Ctrl-C in a terminal reaches only the parent, which then
    // stops its children once, cleanly, instead of each child getting the signal twice.
    detached: true,
  });
  // An exit that runs hooks also stops it at once.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.off('exit', killOnExit));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const recent: string[] = [];
  const remember = (line: string) => {
    recent.push(line);
    if (recent.length > RECENT_LINES) recent.shift();
  };
  const lastLines = () => (recent.length ? `; last lines:\n${recent.join('\n')}` : '; no output');

  let settleReadiness: { resolve: (r: Readiness) => void; reject: (err: Error) => void } | undefined;
  const readiness = new Promise<Readiness>((resolve, reject) => {
    settleReadiness = { resolve, reject };
  });
  // Nobody may ask; a child that exits unready must not be an unhandled rejection here.
  readiness.catch(() => undefined);

  createInterface({ input: child.stdout! }).on('line', (line) => {
    let parsed: Readiness | undefined;
    try {
      parsed = parseReadinessLine(line);
    } catch (err) {
      settleReadiness?.reject(err as Error);
    }
    if (parsed) {
      settleReadiness?.resolve(parsed);
      return;
    }
    remember(line);
    options.onOutputLine?.(line, 'stdout');
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    remember(line);
    options.onOutputLine?.(line, 'stderr');
  });
  const stdoutClosed = new Promise<void>((resolve) => child.stdout!.once('close', () => resolve()));
  void exited.then(async (code) => {
    await Promise.race([stdoutClosed, new Promise((resolve) => setTimeout(resolve, STDOUT_DRAIN_AFTER_EXIT_MS).unref())]);
    settleReadiness?.reject(new Error(`process exited (${code}) before it was ready${lastLines()}`));
  });

  return {
    process: child,
    exited,
    async ready<R extends ReadinessRole>(role: R, timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<ReadinessOf<R>> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms${lastLines()}`)), timeoutMs);
      });
      try {
        const got = await Promise.race([readiness, timeout]);
        if (got.role !== role) throw new Error(`expected ${role} readiness, got ${got.role} readiness`);
        return got as ReadinessOf<R>;
      } finally {
        clearTimeout(timer);
      }
    },
    async stop(graceMs = DEFAULT_STOP_GRACE_MS) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
