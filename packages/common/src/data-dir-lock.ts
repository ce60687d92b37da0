import { randomUUID } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, open, readFile, readlink, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { sleep } from './backoff.js';
import { isProcessRunning } from './process-state.js';
import { describeStartupFailure } from './cli-failure.js';
import type { ErrorCode } from './errors/catalog/index.js';
import { ConclaveError } from './errors/conclave-error.js';
import type { Logger } from './logger.js';

/** The lock's file name inside the data dir. */
export const DATA_DIR_LOCK_FILE = 'conclave.lock';
/** How often a holder touches its lock's mtime, so that readers in another pid namespace can tell it is alive. */
export const DATA_DIR_LOCK_REFRESH_INTERVAL_MS = 10_000;
/** A lock from another pid namespace not refreshed for this long is stale: three missed refreshes. */
export const DATA_DIR_LOCK_STALE_AFTER_MS = 30_000;
/**
 * Unparsable lock content younger than this is left alone for a moment: only a writer on a
 * filesystem without hard links (the `wx` fallback) can be seen mid-write, and it takes milliseconds.
 */
export const DATA_DIR_LOCK_MALFORMED_GRACE_MS = 2_000;
/** Only the holder of this file, next to the lock, may remove a stale lock; it is held for milliseconds. */
const TAKEOVER_FILE = `${DATA_DIR_LOCK_FILE}.takeover`;
/** A takeover file this old was left by a process that died mid-takeover, which otherwise takes milliseconds. */
const TAKEOVER_STALE_MS = 5_000;
/** How soon to look again while another process is taking over. */
const TAKEOVER_POLL_MS = 20;
/** Beyond the waits for an abandoned takeover file and malformed content, how long acquire may keep losing rounds. */
const ACQUIRE_SLACK_MS = 5_000;
/** link() errors that mean the filesystem has no hard links (vfat, some SMB and FUSE mounts), not a refusal. */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

export interface DataDirLockOptions {
  /** The data dir; created (mode 0700, parents too) if missing. */
  dir: string;
  /** Who holds it, named in the error another process gets: 'orchestrator', 'node-agent', 'model-server', 'local fleet'. */
  role: string;
  /** Thrown when a live process holds the dir: 'ORCH-STATE-704', 'NODE-STATE-704' or 'MODEL-STATE-704'. */
  errorCode: ErrorCode;
  /** Thrown when the dir cannot be created or written: 'ORCH-STATE-706', 'NODE-STATE-701' or 'MODEL-STATE-706'. */
  unusableCode: ErrorCode;
  /** Logs the takeover of a stale lock (info, STATE) and a lock that could not be removed (warn). */
  logger?: Logger;
  /** @default DATA_DIR_LOCK_REFRESH_INTERVAL_MS (10 s) */
  refreshIntervalMs?: number;
  /** @default DATA_DIR_LOCK_STALE_AFTER_MS (30 s) */
  staleAfterMs?: number;
  /** @default DATA_DIR_LOCK_MALFORMED_GRACE_MS (2 s) */
  malformedGraceMs?: number;
}

export interface DataDirLock {
  /** `<dir>/conclave.lock`. */
  readonly path: string;
  /**
   * Stops the refresh and removes the lock if it still holds our content. Idempotent, never rejects:
   * a lock left behind is taken over by the next start, so a failure is only logged.
   */
  release(): Promise<void>;
}

/**
 * What the lock file holds. `pidNamespace`, `bootId` and `procStartTicks` are Linux only; they say
 * in which pid space `pid` means something and whether that pid still is the same process.
 * `nonce` makes every lock's content unique, so "still ours" is a plain string comparison.
 */
const lockContentSchema = z.object({
  pid: z.number().int().positive(),
  role: z.string(),
  hostname: z.string(),
  startedAtMs: z.number(),
  pidNamespace: z.string().optional(),
  bootId: z.string().optional(),
  procStartTicks: z.number().optional(),
  nonce: z.string().optional(),
});
type LockContent = z.infer<typeof lockContentSchema>;

interface ResolvedLockOptions {
  dir: string;
  path: string;
  role: string;
  errorCode: ErrorCode;
  unusableCode: ErrorCode;
  logger: Logger | undefined;
  refreshIntervalMs: number;
  staleAfterMs: number;
  malformedGraceMs: number;
}

type Verdict =
  | { kind: 'alive'; holder: LockContent; note?: string }
  | { kind: 'stale'; holder: LockContent | undefined; reason: string }
  | { kind: 'wait'; ms: number };

/**
 * Makes this process the only one using `options.dir`, through `<dir>/conclave.lock`.
 * Throws `errorCode` naming the holder when a live process has it, `unusableCode` when the dir
 * cannot be created or written; takes over (and logs) a lock whose holder is gone.
 */
export async function acquireDataDirLock(options: DataDirLockOptions): Promise<DataDirLock> {
  const resolved: ResolvedLockOptions = {
    dir: options.dir,
    path: join(options.dir, DATA_DIR_LOCK_FILE),
    role: options.role,
    errorCode: options.errorCode,
    unusableCode: options.unusableCode,
    logger: options.logger,
    refreshIntervalMs: options.refreshIntervalMs ?? DATA_DIR_LOCK_REFRESH_INTERVAL_MS,
    staleAfterMs: options.staleAfterMs ?? DATA_DIR_LOCK_STALE_AFTER_MS,
    malformedGraceMs: options.malformedGraceMs ?? DATA_DIR_LOCK_MALFORMED_GRACE_MS,
  };
  try {
    // 0700 as the node agent has always made it: the dir holds a private key and the outbox.
    await mkdir(resolved.dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw unusable(resolved, err);
  }
  const self = await ownIdentity();
  const content: LockContent = {
    pid: process.pid,
    role: resolved.role,
    hostname: hostname(),
    startedAtMs: Date.now(),
    ...self,
    nonce: randomUUID(),
  };
  const text = `${JSON.stringify(content)}\n`;
  await createLock(resolved, text, self);
  return holdLock(resolved, text);
}

/**
 * The lock is created complete or not at all: the content goes to a temp file in the same dir,
 * which link() puts at the lock path, failing with EEXIST when a lock is there. Without hard links
 * it falls back to open('wx') and a write, whose brief empty file the malformed grace covers.
 */
async function createLock(options: ResolvedLockOptions, text: string, self: OwnIdentity): Promise<void> {
  const temp = join(options.dir, `.${DATA_DIR_LOCK_FILE}.${process.pid}.${randomUUID()}.tmp`);
  try {
    await writeFile(temp, text, { mode: 0o644 });
  } catch (err) {
    throw unusable(options, err);
  }
  const links = { hard: true };
  const deadline = Date.now() + TAKEOVER_STALE_MS + options.malformedGraceMs + ACQUIRE_SLACK_MS;
  let holder: LockContent | undefined;
  try {
    for (;;) {
      if (Date.now() > deadline) throw held(options, holder, 'other processes kept taking the lock over; try again');
      try {
        await place(options.path, temp, text, links);
        return;
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw unusable(options, err);
      }
      const existing = await readLock(options);
      if (existing === undefined) continue;
      const verdict = judge(existing, options, self);
      if (verdict.kind === 'alive') throw held(options, verdict.holder, verdict.note);
      if (verdict.kind === 'wait') {
        await sleep(verdict.ms);
        continue;
      }
      holder = verdict.holder;
      let outcome: TakeoverOutcome;
      try {
        outcome = await takeOver(options, existing.text, temp, text, links);
      } catch (err) {
        throw unusable(options, err);
      }
      if (outcome === 'won') {
        options.logger?.info('STATE', 'took over a stale data dir lock', {
          path: options.path,
          pid: holder?.pid,
          role: holder?.role,
          reason: verdict.reason,
        });
        return;
      }
      if (outcome === 'busy') await sleep(TAKEOVER_POLL_MS);
    }
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/** Creates the lock at `path`, failing with EEXIST when one is there; learns once whether hard links work. */
async function place(path: string, temp: string, text: string, links: { hard: boolean }): Promise<void> {
  if (links.hard) {
    try {
      await link(temp, path);
      return;
    } catch (err) {
      const code = errnoOf(err);
      if (code === undefined || !NO_HARD_LINKS.has(code)) throw err;
      links.hard = false;
    }
  }
  await writeExclusive(path, text);
}

async function writeExclusive(path: string, text: string): Promise<void> {
  const handle = await open(path, 'wx', 0o644);
  try {
    await handle.writeFile(text);
  } catch (err) {
    // A half-written lock (ENOSPC) would refuse everyone for the malformed grace: take it back.
    await unlink(path).catch(() => undefined);
    throw err;
  } finally {
    await handle.close();
  }
}

/** won: the lock is ours; busy: another process is taking over; changed: the lock is not the one judged stale. */
type TakeoverOutcome = 'won' | 'busy' | 'changed';

/**
 * Replaces the stale lock whose content was `staleText`, holding `conclave.lock.takeover` while it
 * does. No one removes a lock without that file (except its own holder releasing it), and link()
 * never replaces a file, so the lock read under it stays what we compared until we unlink it: two
 * racers cannot both win. What remains: a process paused for TAKEOVER_STALE_MS inside this function
 * has its takeover file cleared by another and may then unlink that one's fresh lock; and two
 * processes clearing the same abandoned takeover file at the same instant.
 */
async function takeOver(
  options: ResolvedLockOptions,
  staleText: string,
  temp: string,
  text: string,
  links: { hard: boolean },
): Promise<TakeoverOutcome> {
  const guard = join(options.dir, TAKEOVER_FILE);
  try {
    await writeExclusive(guard, text);
  } catch (err) {
    if (errnoOf(err) !== 'EEXIST') throw err;
    await clearAbandonedTakeover(guard);
    return 'busy';
  }
  try {
    const current = await readFile(options.path, 'utf8').catch((err: unknown) => {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw err;
    });
    if (current !== staleText) return 'changed';
    await unlink(options.path);
    try {
      await place(options.path, temp, text, links);
    } catch (err) {
      // A process starting afresh created the lock between our unlink and link: it won, fairly.
      if (errnoOf(err) === 'EEXIST') return 'changed';
      throw err;
    }
    return 'won';
  } finally {
    await removeIfOurs(guard, text).catch(() => undefined);
  }
}

/** A takeover file older than TAKEOVER_STALE_MS belongs to a process that died mid-takeover. */
async function clearAbandonedTakeover(guard: string): Promise<void> {
  try {
    const stats = await stat(guard);
    if (Date.now() - stats.mtimeMs <= TAKEOVER_STALE_MS) return;
    await removeIfOurs(guard, await readFile(guard, 'utf8'));
  } catch {
    // Gone already, or unreadable: the next round looks again.
  }
}

/** Unlinks `path` if it holds `text`; between the read and the unlink only a misjudged holder could change it. */
async function removeIfOurs(path: string, text: string): Promise<void> {
  if ((await readFile(path, 'utf8')) === text) await unlink(path);
}

interface ExistingLock {
  text: string;
  mtimeMs: number;
  holder: LockContent | undefined;
}

/** The lock as it is now; undefined when it has just gone (its holder released it), so the caller retries. */
async function readLock(options: ResolvedLockOptions): Promise<ExistingLock | undefined> {
  try {
    const [text, stats] = await Promise.all([readFile(options.path, 'utf8'), stat(options.path)]);
    return { text, mtimeMs: stats.mtimeMs, holder: parseLock(text) };
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    // A lock we cannot read (another user's, mode 0600) could be live: refuse rather than guess.
    throw unusable(options, err);
  }
}

function parseLock(text: string): LockContent | undefined {
  try {
    const parsed = lockContentSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the holder is alive. A pid means something only in the pid namespace of the boot that
 * wrote it, so `kill(pid, 0)` is asked only there; elsewhere the mtime the holder refreshes decides.
 */
function judge(existing: ExistingLock, options: ResolvedLockOptions, self: OwnIdentity): Verdict {
  const ageMs = Date.now() - existing.mtimeMs;
  const { holder } = existing;
  if (holder === undefined) {
    return ageMs > options.malformedGraceMs
      ? { kind: 'stale', holder, reason: 'unreadable content' }
      : { kind: 'wait', ms: Math.max(1, options.malformedGraceMs - ageMs) + 10 };
  }
  const sameHost = holder.hostname === hostname();
  if (sameHost && holder.bootId !== self.bootId && holder.bootId !== undefined && self.bootId !== undefined) {
    return { kind: 'stale', holder, reason: 'written before a reboot' };
  }
  if (sameHost && holder.bootId === self.bootId && holder.pidNamespace === self.pidNamespace) {
    // A container restarted with the same pid (pid 1, its namespace's inode number reused) finds its own pid.
    if (holder.pid === process.pid) return { kind: 'stale', holder, reason: 'our own pid' };
    if (!isProcessRunning(holder.pid)) return { kind: 'stale', holder, reason: 'pid gone' };
    const ticks = procStartTicks(String(holder.pid));
    if (holder.procStartTicks !== undefined && ticks !== undefined && ticks !== holder.procStartTicks) {
      return { kind: 'stale', holder, reason: 'pid reused' };
    }
    return { kind: 'alive', holder };
  }
  if (sameHost && holder.bootId === self.bootId && holder.bootId !== undefined && holder.pidNamespace !== self.pidNamespace) {
    // The same hostname in this boot, another pid namespace: the same container restarted (Docker and
    // Kubernetes keep its hostname and give it a new pid namespace), whose old process died with the
    // old namespace. Waiting for the mtime would refuse every restart for 30 s and crash-loop it.
    // The case this gets wrong, two containers sharing both the host's name (host networking) and one
    // volume, has two orchestrators on one port as well, which the port check refuses.
    return { kind: 'stale', holder, reason: 'written by this container before it restarted' };
  }
  // Another container or host sharing the volume (or one side without /proc): only freshness tells.
  if (ageMs > options.staleAfterMs) return { kind: 'stale', holder, reason: 'not refreshed' };
  return { kind: 'alive', holder, note: `another pid namespace or host, lock refreshed ${Math.round(Math.max(0, ageMs) / 1000)} s ago` };
}

function holdLock(options: ResolvedLockOptions, text: string): DataDirLock {
  const { path } = options;
  // Readers in another pid namespace judge us by this mtime; errors are ignored because a lock
  // that is gone or replaced is not ours to recreate, and the next tick tries again.
  const refresh = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => undefined);
  }, options.refreshIntervalMs);
  refresh.unref();
  // A normal exit or an uncaught exception runs 'exit' hooks, which must be synchronous.
  const onExit = (): void => {
    try {
      if (readFileSync(path, 'utf8') === text) unlinkSync(path);
    } catch {
      // Nothing can be done while exiting; the next start takes the lock over.
    }
  };
  process.once('exit', onExit);
  let released: Promise<void> | undefined;
  const release = async (): Promise<void> => {
    clearInterval(refresh);
    process.off('exit', onExit);
    try {
      // Between the read and the unlink another process could replace the lock only by judging
      // ours stale, which needs us dead or 30 s without a refresh.
      await removeIfOurs(path, text);
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') options.logger?.warn('STATE', 'could not remove the data dir lock', { path, err });
    }
  };
  return {
    path,
    release: () => (released ??= release()),
  };
}

interface OwnIdentity {
  pidNamespace?: string;
  bootId?: string;
  procStartTicks?: number;
}

/** This process's Linux identity; each part is absent where /proc does not provide it (macOS, Windows). */
async function ownIdentity(): Promise<OwnIdentity> {
  const [pidNamespace, bootId] = await Promise.all([
    readlink('/proc/self/ns/pid').catch(() => undefined),
    readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((s) => s.trim(), () => undefined),
  ]);
  const ticks = procStartTicks('self');
  return {
    ...(pidNamespace !== undefined ? { pidNamespace } : {}),
    ...(bootId ? { bootId } : {}),
    ...(ticks !== undefined ? { procStartTicks: ticks } : {}),
  };
}

/**
 * Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. Equal pid and
 * start ticks mean the same process, so a pid reused after kill -9 is not taken for the holder.
 */
function procStartTicks(pid: string): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces or ')': fields 3… follow the last ')'.
    const value = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isSafeInteger(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function held(options: ResolvedLockOptions, holder: LockContent | undefined, note?: string): ConclaveError {
  const who = holder
    ? `${holder.role} pid ${holder.pid} (started ${new Date(holder.startedAtMs).toISOString()}, host ${holder.hostname})`
    : 'another process';
  return new ConclaveError(options.errorCode, {
    detail: `${options.dir} is held by ${who}; lock file ${options.path}${note ? `; ${note}` : ''}`,
    data: {
      dir: options.dir,
      path: options.path,
      ...(holder ? { pid: holder.pid, role: holder.role, hostname: holder.hostname, startedAtMs: holder.startedAtMs } : {}),
    },
  });
}

function unusable(options: ResolvedLockOptions, err: unknown): ConclaveError {
  const code = errnoOf(err) ?? 'EUNKNOWN';
  // Node's messages start with the code ("EACCES: permission denied, mkdir …"); say it once.
  const message = (err instanceof Error ? err.message : String(err)).replace(`${code}: `, '');
  return new ConclaveError(options.unusableCode, {
    detail: `${options.dir}: ${code} ${message}`,
    data: { dir: options.dir, errno: code },
    cause: err,
  });
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * A `start` command's frame: holds the data dir while `work` runs (released whatever happens), and
 * when the lock cannot be had, writes the one coded line to `stderr` and resolves with its exit code.
 * Run before anything else touches the dir (the logger writes its files there).
 */
export async function whileHoldingDataDir(
  lock: () => Promise<Pick<DataDirLock, 'release'>>,
  failure: { stderr: { write(chunk: string): unknown }; fallbackCode: ErrorCode },
  work: () => Promise<number>,
): Promise<number> {
  let held: Pick<DataDirLock, 'release'>;
  try {
    held = await lock();
  } catch (err) {
    const described = describeStartupFailure(err, failure.fallbackCode);
    failure.stderr.write(`${described.line}\n`);
    return described.exitCode;
  }
  try {
    return await work();
  } finally {
    await held.release();
  }
}
