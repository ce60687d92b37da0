import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchRedis, type LaunchRedisOptions, type RedisServerHandle } from '@conclave/common';

export interface StartRedisOptions extends Omit<LaunchRedisOptions, 'dir'> {
  /** Keep data here instead of a fresh temp dir; a given dir is left in place on stop. */
  dir?: string;
}

/**
 * A private redis-server on a free port for one test file. Its temp dir
 * (under os.tmpdir()) is removed by stop(), so call stop() in afterAll.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServerHandle> {
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'conclave-redis-'));
  let handle: RedisServerHandle;
  try {
    handle = await launchRedis({ ...options, dir });
  } catch (err) {
    if (ownsDir) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let stopped: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    await handle.stop();
    if (ownsDir) rmSync(dir, { recursive: true, force: true });
  };
  return {
    url: handle.url,
    host: handle.host,
    port: handle.port,
    // Getters: with restartOnExit a restart brings a new pid.
    get pid() {
      return handle.pid;
    },
    get restarts() {
      return handle.restarts;
    },
    dir: handle.dir,
    exited: handle.exited,
    kill: (signal) => handle.kill(signal),
    stop(): Promise<void> {
      stopped ??= stop();
      return stopped;
    },
  };
}
