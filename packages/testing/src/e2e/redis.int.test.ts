// Runs the built packages (`pnpm exec tsc -b packages/testing`): the orchestrator is a child process, or
// in this process where the test reaches into its embedded Redis.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureLogger, findFreePort, READINESS_PREFIX, REDIS_AUTH_CONF_FILE, REDIS_FALLBACK_DIRS, sendRedisCommands } from '@conclave/common';
import { ORCHESTRATOR_MAIN, startOrchestrator } from '@conclave/orchestrator';
import type { OrchestratorHandle } from '@conclave/orchestrator';
import { spawnNode } from '../child-process.js';
import { createTestControl } from '../control.js';
import { startTestNode, startTestOrchestrator, tempDir } from '../fleet.js';
import { affineModel } from '../onnx/affine-model.js';
import { startRedis } from '../redis.js';
import { waitUntil } from '../wait-until.js';
import { affineInput, Cleanup, mismatch, wireInputs } from './e2e-support.js';

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

describe('the embedded redis-server', { timeout: 60_000 }, () => {
  const cleanup = new Cleanup();
  afterAll(() => cleanup.run());

  /** An orchestrator in this process with its own embedded Redis (no redisUrl), and its log lines. */
  async function startEmbedded(): Promise<{ orchestrator: OrchestratorHandle; dataDir: string; lines: string[] }> {
    const dir = await tempDir('conclave-e2e-embedded-');
    cleanup.add(() => dir.remove());
    const { logger, lines } = captureLogger('ORCH');
    const orchestrator = await startOrchestrator({ grpcHost: '127.0.0.1', grpcPort: 0, httpPort: -1, dataDir: dir.path, logger });
    cleanup.add(() => orchestrator.close());
    return { orchestrator, dataDir: dir.path, lines };
  }

  it('requires a password kept 0600 in the data dir, which the command line and the log never show', async () => {
    const { orchestrator, dataDir, lines } = await startEmbedded();
    const redis = orchestrator.embeddedRedis;
    expect(redis).toBeDefined();
    const url = new URL(orchestrator.redisUrl);
    const password = decodeURIComponent(url.password);
    expect(password.length).toBeGreaterThanOrEqual(32);
    expect(url.hostname).toBe('127.0.0.1');
    expect(readFileSync(join(dataDir, 'redis-password'), 'utf8').trim()).toBe(password);
    expect(statSync(join(dataDir, 'redis-password')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'redis', REDIS_AUTH_CONF_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    // Any local process without the password is refused.
    const port = Number(url.port);
    expect((await sendRedisCommands('127.0.0.1', port, [['PING']]))[0]).toMatch(/^-NOAUTH/);
    expect((await sendRedisCommands('127.0.0.1', port, [['HSET', 'conclave:x', 'status', 'accepted']]))[0]).toMatch(/^-NOAUTH/);
    expect(await sendRedisCommands('127.0.0.1', port, [['AUTH', password], ['PING']])).toEqual(['+OK', '+PONG']);
    expect(readFileSync(`/proc/${redis?.pid ?? 0}/cmdline`, 'utf8')).not.toContain(password);
    const ps = spawnSync('ps', ['-ww', '-e', '-o', 'args='], { encoding: 'utf8' });
    if (ps.status === 0) expect(ps.stdout).not.toContain(password);
    expect(lines.join('\n')).not.toContain(password);
    expect(lines.some((l) => /started embedded redis-server .*redis=redis:\/\/:\*\*\*@127\.0\.0\.1:/.test(l))).toBe(true);
  });

  it('is restarted after kill -9 (ORCH-STATE-708) and a job submitted afterwards completes', async () => {
    const { orchestrator, lines } = await startEmbedded();
    const model = affineModel({ seed: 5 });
    const control = createTestControl(orchestrator);
    cleanup.add(() => control.close());
    const node = await startTestNode({ orchestrator, name: 'survivor' });
    cleanup.add(() => node.close());
    await waitUntil(async () => (await control.listNodes()).some((n) => n.state === 'connected'), { what: 'the node connected' });
    await control.addModel('affine', model.bytes);
    const before = affineInput(1);
    expect(mismatch(await control.run('affine', wireInputs(before)), model, before)).toBeUndefined();

    const redis = orchestrator.embeddedRedis;
    const firstPid = redis?.pid ?? 0;
    process.kill(firstPid, 'SIGKILL');
    await waitUntil(() => redis?.restarts === 1, { what: 'the restarted redis-server', timeoutMs: 10_000 });
    expect(redis?.pid).not.toBe(firstPid);
    expect(lines.filter((l) => / WARN {2}ORCH-STATE-708 embedded redis-server exited; restarting it .*signal=SIGKILL/.test(l))).toHaveLength(1);

    // ioredis reconnects with its own backoff; until then Control calls fail fast (ORCH-STATE-710).
    await waitUntil(() => lines.some((l) => /reconnected to redis/.test(l)), { what: 'the reconnect line', timeoutMs: 10_000 });
    // The queue, the worker and the model registry come back on their own: no orchestrator restart.
    const after = affineInput(2);
    const job = await control.run('affine', wireInputs(after));
    expect(mismatch(job, model, after)).toBeUndefined();
  });

  it('stops in under 2 s while Redis is unreachable', async () => {
    const redis = await startRedis();
    cleanup.add(() => redis.stop());
    const { logger, lines } = captureLogger('ORCH');
    const orchestrator = await startTestOrchestrator({ redisUrl: redis.url, logger });
    await redis.stop();
    // Long enough for ioredis to see the close and start retrying.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = Date.now();
    await orchestrator.close();
    expect(Date.now() - started, lines.join('\n')).toBeLessThan(2_000);
    expect(lines.filter((l) => /shutdown step did not finish in time/.test(l))).toEqual([]);
  });
});
