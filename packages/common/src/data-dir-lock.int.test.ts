// Runs the lock against real files and real processes: children acquire it through the built
// module (packages/common/dist, so `pnpm build` first) and are killed with SIGKILL or exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DATA_DIR_LOCK_FILE, acquireDataDirLock, type DataDirLock, type DataDirLockOptions } from './data-dir-lock.js';
import { ConclaveError } from './errors/conclave-error.js';
import { captureLogger } from './winston-logger.js';

const DIST_INDEX = new URL('../dist/index.js', import.meta.url).href;
const root = mkdtempSync(join(tmpdir(), 'conclave-lock-'));
const locks: DataDirLock[] = [];
const children: ChildProcess[] = [];
let n = 0;
const TEST_TIMEOUT_MS = 20_000;
const CHILD_TIMEOUT_MS = 10_000;

function freshDir(): string {
  n += 1;
  return join(root, `d${n}`);
}

async function acquire(dir: string, options: Partial<DataDirLockOptions> = {}): Promise<DataDirLock> {
  const lock = await acquireDataDirLock({ dir, role: 'node-agent', errorCode: 'NODE-STATE-704', unusableCode: 'NODE-STATE-701', ...options });
  locks.push(lock);
  return lock;
}

async function refusal(dir: string, options: Partial<DataDirLockOptions> = {}): Promise<ConclaveError> {
  const err = await acquire(dir, options).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConclaveError);
  return err as ConclaveError;
}

/** The lock file this process writes, as an object to alter and write back as another holder's. */
async function ownContent(dir: string): Promise<Record<string, unknown>> {
  const lock = await acquire(dir);
  const content = JSON.parse(readFileSync(lock.path, 'utf8')) as Record<string, unknown>;
  await lock.release();
  return content;
}

function writeLock(dir: string, content: Record<string, unknown>, ageMs = 0): string {
  const path = join(dir, DATA_DIR_LOCK_FILE);
  writeFileSync(path, JSON.stringify(content));
  age(path, ageMs);
  return path;
}

function age(path: string, ageMs: number): void {
  const then = new Date(Date.now() - ageMs);
  utimesSync(path, then, then);
}

type ChildReport = { path: string } | { code: string; message: string };

/**
 * A child that loads dist, says it is ready, acquires the lock when told to go and reports over IPC. Modes: `hold` stays alive,
 * `exit` ends normally, `throw` dies of an uncaught exception. Kept to a constant string (the
 * values come through argv) because this package has no fixture scripts and the brief allows
 * this one file.
 */
const CHILD_SCRIPT = `
const [distUrl, dir, mode] = process.argv.slice(1);
const { acquireDataDirLock } = await import(distUrl);
process.send({ ready: true });
await new Promise((resolve) => process.once('message', resolve));
try {
  const lock = await acquireDataDirLock({ dir, role: 'child', errorCode: 'NODE-STATE-704', unusableCode: 'NODE-STATE-701' });
  process.send({ path: lock.path }, () => {
    if (mode === 'hold') setInterval(() => {}, 60_000);
    if (mode === 'exit') process.disconnect();
    if (mode === 'throw') throw new Error('child failed after acquiring');
  });
} catch (err) {
  process.send({ code: err.code, message: err.message }, () => process.disconnect());
}
`;

interface Child {
  child: ChildProcess;
  /** Resolves once the module is loaded; the child then waits for go(). */
  ready: Promise<void>;
  go(): void;
  report: Promise<ChildReport>;
  exited: Promise<number | null>;
}

function spawnChild(dir: string, mode: 'hold' | 'exit' | 'throw'): Child {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD_SCRIPT, DIST_INDEX, dir, mode], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const messages: unknown[] = [];
  const waiters: Array<() => void> = [];
  child.on('message', (message) => {
    messages.push(message);
    for (const wake of waiters.splice(0)) wake();
  });
  const nth = (index: number): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child sent nothing in ${CHILD_TIMEOUT_MS} ms: ${stderr}`)), CHILD_TIMEOUT_MS);
      const check = (): void => {
        if (messages.length > index) {
          clearTimeout(timer);
          resolve(messages[index]);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          clearTimeout(timer);
          reject(new Error(`child exited (${String(child.exitCode ?? child.signalCode)}) before reporting: ${stderr}`));
        } else {
          waiters.push(check);
        }
      };
      child.once('exit', () => setImmediate(check));
      check();
    });
  return {
    child,
    ready: nth(0).then(() => undefined),
    go: () => child.send('go'),
    report: nth(1) as Promise<ChildReport>,
    exited,
  };
}

/** A child told to go as soon as it is ready. */
function startChild(dir: string, mode: 'hold' | 'exit' | 'throw'): Child {
  const started = spawnChild(dir, mode);
  started.ready.then(started.go, () => undefined);
  return started;
}

afterEach(async () => {
  await Promise.all(locks.splice(0).map((l) => l.release()));
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('acquireDataDirLock', { timeout: TEST_TIMEOUT_MS }, () => {
  it('creates the dir and the lock, and release removes it and leaves nothing', async () => {
    const dir = join(freshDir(), 'nested');
    const lock = await acquire(dir);
    expect(lock.path).toBe(join(dir, DATA_DIR_LOCK_FILE));
    const content = JSON.parse(readFileSync(lock.path, 'utf8')) as Record<string, unknown>;
    expect(content).toMatchObject({ pid: process.pid, role: 'node-agent', hostname: hostname() });
    expect(typeof content.startedAtMs).toBe('number');
    if (process.platform === 'linux') {
      expect(content.pidNamespace).toMatch(/^pid:\[\d+\]$/);
      expect(content.bootId).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(readdirSync(dir)).toEqual([DATA_DIR_LOCK_FILE]);
    await lock.release();
    await lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses while a live child holds the dir, naming it, and takes over once it is killed', async () => {
    const dir = freshDir();
    const { child, report, exited } = startChild(dir, 'hold');
    expect(await report).toEqual({ path: join(dir, DATA_DIR_LOCK_FILE) });
    const err = await refusal(dir);
    expect(err.code).toBe('NODE-STATE-704');
    expect(err.message).toContain(`${dir} is held by child pid ${child.pid} (started `);
    expect(err.message).toContain(`host ${hostname()}); lock file ${join(dir, DATA_DIR_LOCK_FILE)}`);
    expect(err.data).toMatchObject({ pid: child.pid, role: 'child', path: join(dir, DATA_DIR_LOCK_FILE) });

    child.kill('SIGKILL');
    await exited;
    expect(existsSync(join(dir, DATA_DIR_LOCK_FILE))).toBe(true);
    const { logger, jsonLines } = captureLogger('NODE');
    const lock = await acquire(dir, { logger });
    expect(JSON.parse(readFileSync(lock.path, 'utf8'))).toMatchObject({ pid: process.pid });
    const takeover = jsonLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.message === 'took over a stale data dir lock');
    expect(takeover).toMatchObject({ level: 'info', pid: child.pid, role: 'child', path: lock.path, reason: 'pid gone' });
  });

  it('takes over a lock whose pid now belongs to a later process', async (ctx) => {
    if (!existsSync('/proc/self/stat')) ctx.skip();
    const dir = freshDir();
    const { report } = startChild(dir, 'hold');
    const reported = await report;
    expect(reported).toHaveProperty('path');
    const path = join(dir, DATA_DIR_LOCK_FILE);
    const content = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    expect(typeof content.procStartTicks).toBe('number');
    writeLock(dir, { ...content, procStartTicks: (content.procStartTicks as number) - 1 });
    const { logger, jsonLines } = captureLogger('NODE');
    await acquire(dir, { logger });
    expect(jsonLines.join('\n')).toContain('"reason":"pid reused"');
  });

  it('creates a missing data dir private to its user (mode 0700): it holds a key and an outbox', async () => {
    const dir = join(freshDir(), 'nested', 'data');
    const lock = await acquire(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    await lock.release();
  });

  it('takes over a lock carrying its own pid (a restarted container is pid 1 again)', async () => {
    const dir = freshDir();
    const content = await ownContent(dir);
    writeLock(dir, { ...content, nonce: 'earlier run' });
    const lock = await acquire(dir);
    expect(JSON.parse(readFileSync(lock.path, 'utf8'))).not.toMatchObject({ nonce: 'earlier run' });
  });

  it('judges a lock from another pid namespace by its mtime', async () => {
    const dir = freshDir();
    const content = await ownContent(dir);
    // A pid from another namespace is never looked up here: only the mtime can make this lock stale.
    const other = { ...content, pid: 1, role: 'orchestrator', hostname: 'other-container', pidNamespace: 'pid:[1]', nonce: 'other container' };
    writeLock(dir, other, 200);
    const err = await refusal(dir, { staleAfterMs: 1_000 });
    expect(err.message).toContain('held by orchestrator pid 1');
    expect(err.message).toMatch(/another pid namespace or host, lock refreshed \d+ s ago$/);

    age(join(dir, DATA_DIR_LOCK_FILE), 5_000);
    const { logger, jsonLines } = captureLogger('NODE');
    await acquire(dir, { staleAfterMs: 1_000, logger });
    expect(jsonLines.join('\n')).toContain('"reason":"not refreshed"');
  });

  it('takes over a fresh lock from another pid namespace under its own hostname (the same container, restarted)', async () => {
    const dir = freshDir();
    const content = await ownContent(dir);
    writeLock(dir, { ...content, pid: 1, pidNamespace: 'pid:[1]', nonce: 'before the restart' });
    const { logger, jsonLines } = captureLogger('NODE');
    await acquire(dir, { logger });
    expect(jsonLines.join('\n')).toContain('"reason":"written by this container before it restarted"');
  });

  it('takes over a fresh lock from before a reboot, but not a fresh one from another host', async () => {
    const dir = freshDir();
    const content = await ownContent(dir);
    writeLock(dir, { ...content, pid: 1, hostname: 'elsewhere', bootId: 'another-boot', nonce: 'other host' });
    expect((await refusal(dir)).message).toContain('host elsewhere)');
    writeLock(dir, { ...content, pid: 1, bootId: 'another-boot', nonce: 'before reboot' });
    const { logger, jsonLines } = captureLogger('NODE');
    await acquire(dir, { logger });
    expect(jsonLines.join('\n')).toContain('"reason":"written before a reboot"');
  });

  it('keeps the mtime fresh while held', async () => {
    const dir = freshDir();
    const lock = await acquire(dir, { refreshIntervalMs: 50 });
    age(lock.path, 60_000);
    const deadline = Date.now() + 5_000;
    while (Date.now() - statSync(lock.path).mtimeMs > 10_000 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(Date.now() - statSync(lock.path).mtimeMs).toBeLessThan(10_000);
  });

  it('waits out the grace for malformed content, and takes an old one over at once', async () => {
    const dir = freshDir();
    const path = join(dir, DATA_DIR_LOCK_FILE);
    await ownContent(dir);
    writeFileSync(path, '{"pid":');
    const started = Date.now();
    const lock = await acquire(dir, { malformedGraceMs: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await lock.release();

    writeFileSync(path, 'not json at all');
    age(path, 60_000);
    const { logger, jsonLines } = captureLogger('NODE');
    const quick = Date.now();
    await acquire(dir, { logger });
    expect(Date.now() - quick).toBeLessThan(250);
    expect(jsonLines.join('\n')).toContain('"reason":"unreadable content"');
  });

  it('lets exactly one of several racing children take over a stale lock', async () => {
    const dir = freshDir();
    const content = await ownContent(dir);
    writeLock(dir, { ...content, pid: 1, bootId: 'another-boot', nonce: 'stale' });
    const racers = Array.from({ length: 4 }, () => spawnChild(dir, 'hold'));
    // All loaded first, then released together, so their acquires overlap.
    await Promise.all(racers.map((r) => r.ready));
    for (const r of racers) r.go();
    const reports = await Promise.all(racers.map((r) => r.report));
    const winners = reports.filter((r) => 'path' in r);
    expect(winners).toHaveLength(1);
    const winner = racers[reports.findIndex((r) => 'path' in r)]!;
    for (const r of reports.filter((x) => !('path' in x))) {
      expect(r).toMatchObject({ code: 'NODE-STATE-704' });
      expect((r as { message: string }).message).toContain(`held by child pid ${winner.child.pid} `);
    }
    expect(JSON.parse(readFileSync(join(dir, DATA_DIR_LOCK_FILE), 'utf8'))).toMatchObject({ pid: winner.child.pid });
  });

  it('clears a takeover file abandoned by a process that died mid-takeover', async () => {
    const dir = freshDir();
    const content = await ownContent(dir);
    writeLock(dir, { ...content, pid: 1, bootId: 'another-boot', nonce: 'stale' });
    const guard = join(dir, `${DATA_DIR_LOCK_FILE}.takeover`);
    writeFileSync(guard, 'a process killed while taking over');
    age(guard, 60_000);
    const lock = await acquire(dir);
    expect(readdirSync(dir)).toEqual([DATA_DIR_LOCK_FILE]);
    expect(JSON.parse(readFileSync(lock.path, 'utf8'))).toMatchObject({ pid: process.pid });
  });

  it('release leaves a lock that is no longer ours', async () => {
    const dir = freshDir();
    const lock = await acquire(dir);
    const content = JSON.parse(readFileSync(lock.path, 'utf8')) as Record<string, unknown>;
    writeLock(dir, { ...content, nonce: 'someone else' });
    await lock.release();
    expect(existsSync(lock.path)).toBe(true);
  });

  it('throws the unusable code when the dir cannot be created', async () => {
    const parent = freshDir();
    mkdirSync(parent);
    const file = join(parent, 'a-file');
    writeFileSync(file, '');
    const under = await refusal(join(file, 'data'), { unusableCode: 'ORCH-STATE-706' });
    expect(under.code).toBe('ORCH-STATE-706');
    expect(under.message).toContain(`${join(file, 'data')}: ENOTDIR not a directory`);
    expect(under.data).toMatchObject({ errno: 'ENOTDIR' });
    const itself = await refusal(file, { unusableCode: 'MODEL-STATE-706' });
    expect(itself.code).toBe('MODEL-STATE-706');
    expect(itself.message).toContain(`${file}: EEXIST`);
  });

  it('removes the lock when the holder exits normally or dies of an uncaught exception', async () => {
    for (const mode of ['exit', 'throw'] as const) {
      const dir = freshDir();
      const { report, exited } = startChild(dir, mode);
      expect(await report).toEqual({ path: join(dir, DATA_DIR_LOCK_FILE) });
      expect(await exited).toBe(mode === 'exit' ? 0 : 1);
      expect(readdirSync(dir)).toEqual([]);
    }
  });
});
