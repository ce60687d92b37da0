// Runs the built CLIs (`pnpm build`): every start-up failure is one coded line on stderr and the
// exit code docs/cli.md gives (2 for bad input, 1 otherwise), with nothing on stdout.
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { access, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_DIR_LOCK_FILE } from '@conclave/common';
import type { RedisServerHandle } from '@conclave/common';
import { MODEL_SERVER_MAIN } from '@conclave/model-server';
import { NODE_AGENT_MAIN } from '@conclave/node-agent';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import { spawnNode } from '../child-process.js';
import { spawnNodeAgent, spawnOrchestrator, tempDir } from '../fleet.js';
import { startRedis } from '../redis.js';
import { Cleanup, within } from './e2e-support.js';

/** A line of the human console log: `2026-…Z INFO  ORCH-NET connected to redis …`. */
const LOG_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (ERROR|WARN|INFO|DEBUG) +[A-Z]+-/;
/** The longest any of these one-shot runs may take: they fail at start-up, before any retry loop. */
const RUN_TIMEOUT_MS = 15_000;

const OPENSSL = (() => {
  try {
    execFileSync('which', ['openssl'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

interface Run {
  code: number | null;
  stdout: string;
  /** The non-empty lines of stderr. */
  stderr: string[];
  elapsedMs: number;
}

const cleanup = new Cleanup();
let redis: RedisServerHandle;
/** The cwd of every run, so that no default `./.conclave/…` data dir lands in the repository. */
let workDir: string;

beforeAll(async () => {
  redis = await startRedis({ appendOnly: false });
  cleanup.add(() => redis.stop());
  workDir = await dir('conclave-e2e-startup-cwd-');
}, 30_000);
afterAll(() => cleanup.run(), 30_000);

async function dir(prefix = 'conclave-e2e-startup-'): Promise<string> {
  const d = await tempDir(prefix);
  cleanup.add(() => d.remove());
  return d.path;
}

/** A regular file where a data dir is expected. */
async function regularFile(): Promise<string> {
  const path = join(await dir(), 'not-a-dir');
  await writeFile(path, 'a file, not a directory\n');
  return path;
}

/** A port this process listens on (127.0.0.1) until the file's cleanup. */
async function holdPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.add(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs `node script args…` to its exit, stdout and stderr apart; SIGKILL after `timeoutMs`. */
async function runCli(script: string, args: string[], timeoutMs = RUN_TIMEOUT_MS): Promise<Run> {
  const started = Date.now();
  const child = spawn(process.execPath, [script, ...args], { cwd: workDir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  try {
    const code = await within(closed, timeoutMs, `${args.join(' ')} to exit`);
    return { code, stdout, stderr: stderr.split('\n').filter((l) => l.trim() !== ''), elapsedMs: Date.now() - started };
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${String(err)}; stderr so far:\n${stderr}`);
  }
}

/**
 * The failure line of `run`: asserts exit code, empty stdout, and that stderr is exactly that one
 * coded line.
 */
function failureLine(run: Run, code: string, exitCode: number): string {
  const context = `stderr:\n${run.stderr.join('\n')}\nstdout:\n${run.stdout}`;
  expect(run.code, context).toBe(exitCode);
  expect(run.stdout, context).toBe('');
  expect(run.stderr.slice(0, -1), context).toEqual([]);
  const line = run.stderr.at(-1) ?? '';
  expect(line, context).not.toMatch(LOG_LINE);
  expect(line.startsWith(`${code} `), context).toBe(true);
  return line;
}

function orchestratorStart(dataDir: string, ...args: string[]): Promise<Run> {
  return runCli(ORCHESTRATOR_MAIN, [
    'start', '--data-dir', dataDir, '--redis-url', redis.url, '--grpc-host', '127.0.0.1', '--grpc-port', '0', '--http-port', '0', ...args,
  ]);
}

/** The orchestrator CLI started as a long-running child, stopped at the file's end. */
async function runningOrchestrator(dataDir: string, args: string[] = []): Promise<Awaited<ReturnType<typeof spawnOrchestrator>>> {
  const orchestrator = await spawnOrchestrator({ redisUrl: redis.url, dataDir, args });
  cleanup.add(() => orchestrator.stop());
  return orchestrator;
}

describe('orchestrator start-up failures', () => {
  it('a taken gRPC port is ORCH-NET-604 naming --grpc-port, exit 1', async () => {
    const held = await holdPort();
    const line = failureLine(await orchestratorStart(await dir(), '--grpc-port', String(held)), 'ORCH-NET-604', 1);
    expect(line).toContain(`127.0.0.1:${held}`);
    expect(line).toContain('--grpc-port');
  });

  it('a taken HTTP port is ORCH-NET-605 naming --http-port, exit 1', async () => {
    const held = await holdPort();
    const line = failureLine(await orchestratorStart(await dir(), '--http-port', String(held)), 'ORCH-NET-605', 1);
    expect(line).toContain(`127.0.0.1:${held}`);
    expect(line).toContain('--http-port');
  });

  // The PEM files are checked before Redis starts: nothing is written and nothing else is printed.
  it('a junk TLS PEM is ORCH-AUTH-557, exit 2', async () => {
    const junk = join(await dir(), 'bad.pem');
    await writeFile(junk, 'not a PEM file\n');
    const line = failureLine(await orchestratorStart(await dir(), '--tls-cert', junk, '--tls-key', junk), 'ORCH-AUTH-557', 2);
    expect(line).toContain(`--tls-cert ${junk}`);
  });

  it.skipIf(!OPENSSL)('a TLS key that does not belong to the certificate is ORCH-AUTH-557, exit 2 (needs openssl)', async () => {
    const d = await dir();
    const cert = join(d, 'cert.pem');
    const key = join(d, 'key.pem');
    const otherKey = join(d, 'other-key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    ], { stdio: 'ignore', timeout: 10_000 });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    await writeFile(otherKey, privateKey.export({ type: 'pkcs8', format: 'pem' }));

    const line = failureLine(await orchestratorStart(await dir(), '--tls-cert', cert, '--tls-key', otherKey), 'ORCH-AUTH-557', 2);
    expect(line).toContain(`--tls-key ${otherKey}`);
    // The certificate itself is good: with its own key the orchestrator serves TLS.
    const good = await runningOrchestrator(await dir(), ['--tls-cert', cert, '--tls-key', key]);
    expect((await good.ready('orchestrator')).tls).toBe(true);
    expect(await good.stop()).toBe(0);
  });

  it('a data dir that is a regular file is ORCH-STATE-706, exit 1', async () => {
    const file = await regularFile();
    expect(failureLine(await orchestratorStart(file), 'ORCH-STATE-706', 1)).toContain(file);
  });

  it('an unknown flag or command is ORCH-STATE-705, exit 2', async () => {
    expect(failureLine(await runCli(ORCHESTRATOR_MAIN, ['start', '--bogus']), 'ORCH-STATE-705', 2)).toContain('--bogus');
    expect(failureLine(await runCli(ORCHESTRATOR_MAIN, ['nodes', 'lst']), 'ORCH-STATE-705', 2)).toContain("'lst'");
  });

  it('an unknown key in the config file is ORCH-STATE-703 naming it, exit 2', async () => {
    const config = join(await dir(), 'orchestrator.yaml');
    await writeFile(config, 'grpcPrt: 1\n');
    const line = failureLine(await orchestratorStart(await dir(), '--config', config), 'ORCH-STATE-703', 2);
    expect(line).toContain('grpcPrt');
  });

  it('a client --address with a port out of range is ORCH-STATE-703, exit 2', async () => {
    const line = failureLine(await runCli(ORCHESTRATOR_MAIN, ['nodes', 'list', '--address', '127.0.0.1:99999']), 'ORCH-STATE-703', 2);
    expect(line).toContain('address');
    expect(line).not.toMatch(/RangeError/);
  });

  it('a data dir held by a running orchestrator is ORCH-STATE-704 naming its pid; the lock goes with it, even after SIGKILL', async () => {
    const dataDir = await dir();
    const first = await runningOrchestrator(dataDir);
    const line = failureLine(await orchestratorStart(dataDir), 'ORCH-STATE-704', 1);
    expect(line).toContain(`pid ${String(first.process.pid)} `);

    expect(await first.stop()).toBe(0);
    const second = await runningOrchestrator(dataDir);
    second.process.kill('SIGKILL');
    await second.exited;
    // The killed one could not remove its lock: the next start takes over a stale lock.
    await access(join(dataDir, DATA_DIR_LOCK_FILE));
    const third = await runningOrchestrator(dataDir);
    expect(third.lines.filter((l) => /ORCH-STATE-704/.test(l))).toEqual([]);
    expect(await third.stop()).toBe(0);
  });

  it('a wrong Redis password is ORCH-AUTH-558 within 5 s, exit 1, the passwords not shown', async () => {
    const password = `right-${randomBytes(8).toString('hex')}`;
    const guarded = await startRedis({ password, appendOnly: false });
    cleanup.add(() => guarded.stop());
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    const run = await runCli(ORCHESTRATOR_MAIN, [
      'start', '--data-dir', await dir(), '--redis-url', `redis://:${wrong}@127.0.0.1:${guarded.port}`,
      '--grpc-host', '127.0.0.1', '--grpc-port', '0', '--http-port', '0',
    ]);
    const line = failureLine(run, 'ORCH-AUTH-558', 1);
    expect(line).toContain(`127.0.0.1:${guarded.port}`);
    expect(run.elapsedMs).toBeLessThan(5_000);
    expect(run.stderr.join('\n')).not.toContain(wrong);
    expect(run.stderr.join('\n')).not.toContain(password);
  });
});

describe('node agent start-up failures', () => {
  let orchestrator: Awaited<ReturnType<typeof spawnOrchestrator>>;

  beforeAll(async () => {
    orchestrator = await runningOrchestrator(await dir());
  }, 30_000);

  function agentStart(...args: string[]): Promise<Run> {
    return runCli(NODE_AGENT_MAIN, ['start', ...args]);
  }

  it('a taken local HTTP port is NODE-NET-604 naming --http-port, exit 1, before the join token is used', async () => {
    const held = await holdPort();
    const join = await orchestrator.createJoinString();
    const dataDir = await dir();
    const line = failureLine(await agentStart('--join', join, '--data-dir', dataDir, '--http-port', String(held)), 'NODE-NET-604', 1);
    expect(line).toContain(`127.0.0.1:${held}`);
    expect(line).toContain('--http-port');
    // The token is single use: the same join string still enrolls a node, so the port was probed first.
    const node = await spawnNodeAgent({ orchestrator, join, dataDir, slots: 1 });
    cleanup.add(() => node.stop());
    expect(await node.stop()).toBe(0);
  });

  it('a data dir that is a regular file is NODE-STATE-701, exit 1', async () => {
    const file = await regularFile();
    const line = failureLine(
      await agentStart('--join', await orchestrator.createJoinString(), '--data-dir', file, '--http-port', '0'), 'NODE-STATE-701', 1,
    );
    expect(line).toContain(file);
  });

  it('a malformed join string is NODE-AUTH-540, exit 2', async () => {
    failureLine(await agentStart('--join', 'conclave-join:v1:garbage', '--data-dir', await dir(), '--http-port', '0'), 'NODE-AUTH-540', 2);
  });

  it('an unknown flag is NODE-STATE-705, exit 2', async () => {
    expect(failureLine(await agentStart('--bogus'), 'NODE-STATE-705', 2)).toContain('--bogus');
  });

  it('a data dir held by a running agent is NODE-STATE-704 naming its pid, exit 1', async () => {
    const dataDir = await dir();
    const first = await spawnNodeAgent({ orchestrator, dataDir, slots: 1 });
    cleanup.add(() => first.stop());
    const line = failureLine(
      await agentStart('--orchestrator', orchestrator.address, '--data-dir', dataDir, '--http-port', '0'), 'NODE-STATE-704', 1,
    );
    expect(line).toContain(`pid ${String(first.process.pid)} `);
    expect(first.process.exitCode).toBeNull();
    expect(await first.stop()).toBe(0);
  });
});

describe('model server start-up failures', () => {
  it('a taken port is MODEL-NET-604 naming --port, exit 1', async () => {
    const held = await holdPort();
    const line = failureLine(await runCli(MODEL_SERVER_MAIN, ['start', '--host', '127.0.0.1', '--port', String(held)]), 'MODEL-NET-604', 1);
    expect(line).toContain(`127.0.0.1:${held}`);
    expect(line).toContain('--port');
  });

  it('an unknown flag is MODEL-STATE-705, exit 2', async () => {
    expect(failureLine(await runCli(MODEL_SERVER_MAIN, ['start', '--bogus']), 'MODEL-STATE-705', 2)).toContain('--bogus');
  });

  describe('with --orchestrator but never joined and no join string', () => {
    let address: string;

    beforeAll(async () => {
      ({ address } = await runningOrchestrator(await dir()));
    }, 30_000);

    for (const [what, joinArgs] of [['no --join', []], ["--join ''", ['--join', '']]] as const) {
      it(`${what}: serves HTTP with a NODE-STATE-702 warning, and exits 0 on SIGTERM`, async () => {
        const port = await freePort();
        const server = spawnNode(MODEL_SERVER_MAIN, [
          'start', '--host', '127.0.0.1', '--port', String(port), '--orchestrator', address, '--data-dir', await dir(), ...joinArgs,
        ]);
        cleanup.add(() => server.stop());
        // Ready without a node id: serving HTTP alone, its model loaded.
        const ready = await server.ready('model-server');
        expect(ready).toEqual({ role: 'model-server', url: `http://127.0.0.1:${port}`, model: 'conclave-demo', node: null });
        expect((await fetch(`${ready.url}/health`)).status).toBe(200);
        expect(server.lines.filter((l) => /^\S+Z WARN +NODE-STATE-702 /.test(l))).toHaveLength(1);
        expect(server.process.exitCode).toBeNull();
        expect(await server.stop()).toBe(0);
      }, 30_000);
    }
  });
});
