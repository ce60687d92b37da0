// Runs the built CLIs (`pnpm exec tsc -b packages/testing`): the orchestrator is a child process.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findFreePort, READINESS_PREFIX, REDIS_FALLBACK_DIRS } from '@conclave/common';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import { spawnNode } from '../child-process.js';
import { tempDir } from '../fleet.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { Cleanup } from './e2e-support.js';

/**
 * redis-server copies that a PATH without it does not hide: findRedisServer also looks in
 * REDIS_FALLBACK_DIRS (/usr/bin on Debian), so those must be hidden another way.
 */
const fallbackCopies = [...new Set(
  REDIS_FALLBACK_DIRS.map((dir) => join(dir, 'redis-server')).filter((p) => existsSync(p)).map((p) => realpathSync(p)),
)];

/** The absolute path of a program on this process's PATH (the child's PATH will not have it). */
function which(name: string): string | undefined {
  return (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, name)).find((p) => existsSync(p));
}

const [unshare, sh, mount] = [which('unshare'), which('sh'), which('mount')];

/** Whether an unprivileged user + mount namespace can bind /dev/null over those copies. */
const canHideFallbacks =
  fallbackCopies.length === 0 ||
  (unshare !== undefined && sh !== undefined && mount !== undefined &&
    spawnSync(unshare, ['--user', '--map-root-user', '--mount', 'true'], { stdio: 'ignore' }).status === 0);

/** This process's environment minus CONCLAVE_* (a CONCLAVE_REDIS_URL would defeat the test). */
function withoutConclaveEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('CONCLAVE_')));
}

describe('orchestrator and Redis', () => {
  const cleanup = new Cleanup();
  afterAll(() => cleanup.run());

  it('retries an unreachable Redis with backoff and becomes ready once it is started', async () => {
    const port = await findFreePort();
    const dir = await tempDir('conclave-e2e-orch-');
    cleanup.add(() => dir.remove());
    const orchestrator = spawnNode(ORCHESTRATOR_MAIN, [
      'start', '--grpc-port', '0', '--http-port', '0', '--data-dir', dir.path, '--redis-url', `redis://127.0.0.1:${port}`,
    ]);
    cleanup.add(() => orchestrator.stop());

    // Every retry says why, under the catalog code, with its delay.
    await orchestrator.waitFor(/ORCH-NET-601 Redis unreachable .*delayMs=\d+ .*ECONNREFUSED/);
    await waitUntil(() => orchestrator.lines.filter((l) => /ORCH-NET-601/.test(l)).length >= 2, { what: 'a second retry' });
    // Down for a while: the orchestrator keeps retrying (ioredis, with the same full-jitter
    // backoff) and neither exits nor claims to be ready.
    await expect(orchestrator.ready('orchestrator', 1_500)).rejects.toThrow(/not ready after 1500 ms/);
    expect(orchestrator.process.exitCode).toBeNull();

    const redis = await startRedis({ port });
    cleanup.add(() => redis.stop());
    await orchestrator.ready('orchestrator', 40_000);
    await orchestrator.waitFor(/connected to redis/);
    expect(await orchestrator.stop()).toBe(0);
  });

  it.skipIf(!canHideFallbacks)('without redis-server and --redis-url, `orchestrator start` exits 1 with ORCH-STATE-701 and the install hint', async () => {
    const emptyBin = await tempDir('conclave-e2e-path-');
    const dir = await tempDir('conclave-e2e-orch-');
    cleanup.add(() => emptyBin.remove());
    cleanup.add(() => dir.remove());
    const orchestratorArgs = [ORCHESTRATOR_MAIN, 'start', '--grpc-port', '0', '--http-port', '0', '--data-dir', dir.path];
    const [command, args] = fallbackCopies.length === 0
      ? [process.execPath, orchestratorArgs]
      : [unshare ?? 'unshare', [
        '--user', '--map-root-user', '--mount', sh ?? 'sh', '-c',
        // Binds /dev/null (not a regular file, so not an executable) over each copy, then runs node.
        'for f in $HIDE; do "$MOUNT" --bind /dev/null "$f" || exit 97; done; exec "$@"', 'sh', process.execPath, ...orchestratorArgs,
      ]] as const;
    const child = spawn(command, args, {
      env: { ...withoutConclaveEnv(), PATH: emptyBin.path, HIDE: fallbackCopies.join(' '), MOUNT: mount ?? 'mount' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));

    expect(code, output).toBe(1);
    expect(output).toMatch(/^ORCH-STATE-701 redis-server not found/m);
    expect(output).toContain('apt-get install redis-server');
    expect(output).toContain('--redis-url');
    expect(output).not.toContain(READINESS_PREFIX);
  });
});
