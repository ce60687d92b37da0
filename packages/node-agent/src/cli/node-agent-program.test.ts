import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError, captureLogger, parseReadinessLine, type ClosableLogger, type LoggerOptions } from '@conclave/common';
import { runNodeAgentCli, type NodeAgentCliDeps } from './node-agent-program.js';
import type { StartNodeAgentOptions } from './start-command.js';

class StringOut {
  text = '';
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

async function run(argv: string[], env: Record<string, string> = {}, deps: Partial<NodeAgentCliDeps> = {}) {
  const stdout = new StringOut();
  const stderr = new StringOut();
  const started: StartNodeAgentOptions[] = [];
  let closed = 0;
  const code = await runNodeAgentCli(argv, {
    env,
    io: { stdout, stderr },
    startNodeAgent: async (options) => {
      started.push(options);
      return { nodeId: 'n-1', httpPort: 7403, connected: true, close: async () => { closed += 1; } };
    },
    shutdownSignal: () => Promise.resolve('SIGINT'),
    createLogger: () => Object.assign(captureLogger('NODE').logger, { close: async () => {} }) as ClosableLogger,
    // No lock files under the data dirs these fake starts name (/var/lib/conclave, /from/file).
    lockDataDir: async () => ({ release: async () => {} }),
    ...deps,
  });
  return { code, stdout: stdout.text, stderr: stderr.text, started, closed };
}

describe('node-agent CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-agent-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts with the given flags and defaults, closes on the signal, exits 0', async () => {
    const r = await run(['start', '--orchestrator', 'orch:7400', '--data-dir', '/var/lib/conclave']);
    expect(r.code).toBe(0);
    expect(r.closed).toBe(1);
    expect(r.started[0]).toMatchObject({ orchestrator: 'orch:7400', dataDir: '/var/lib/conclave', httpPort: 7403 });
    expect(r.started[0]?.slots).toBeUndefined();
    expect(r.started[0]?.name).toBeUndefined();
    // Connected at once: its one line on stdout is the readiness line.
    expect(r.stdout.split('\n').filter((l) => l !== '').map(parseReadinessLine)).toEqual([{ role: 'node-agent', node: 'n-1', httpPort: 7403 }]);
  });

  it('a fatal authentication failure is its coded line and exit 1, the agent closed and never announced', async () => {
    let closed = 0;
    const r = await run(['start', '--orchestrator', 'o:1', '--data-dir', dir], {}, {
      startNodeAgent: async () => ({
        nodeId: 'n-1', httpPort: -1, connected: false,
        fatal: Promise.resolve(new ConclaveError('NODE-AUTH-501', { detail: 'pinned SHA256:a, got SHA256:b' })),
        close: async () => { closed += 1; },
      }),
      shutdownSignal: () => new Promise(() => undefined),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^NODE-AUTH-501 orchestrator key does not match the pinned fingerprint: pinned SHA256:a, got SHA256:b — [^\n]*\n$/);
    expect(r.stdout).toBe('');
    expect(closed).toBe(1);
  });

  it('takes flags over env over the YAML file', async () => {
    const file = join(dir, 'agent.yaml');
    await writeFile(file, 'orchestrator: file:7400\ndataDir: /from/file\nslots: 2\nname: from-file\nhttpPort: 9003\n');
    const env = { CONCLAVE_ORCHESTRATOR: 'env:7400', CONCLAVE_SLOTS: '3', CONCLAVE_HTTP_PORT: '-1' };
    const r = await run(['start', '--config', file, '--slots', '4'], env);
    expect(r.code).toBe(0);
    expect(r.started[0]).toMatchObject({ orchestrator: 'env:7400', dataDir: '/from/file', slots: 4, name: 'from-file', httpPort: -1 });
  });

  it('makes its logger with a tap at the ship level and hands the agent that tap and the spool bound', async () => {
    const made: LoggerOptions[] = [];
    const createLogger = (options: LoggerOptions) => {
      made.push(options);
      return Object.assign(captureLogger('NODE').logger, { close: async () => {} }) as ClosableLogger;
    };
    const defaults = await run(['start', '--orchestrator', 'o:1', '--data-dir', dir], {}, { createLogger });
    expect(defaults.started[0]?.logTap?.level).toBe('info');
    expect(defaults.started[0]?.logTap).toBe(made[0]?.tap);
    expect(defaults.started[0]?.logSpoolMaxBytes).toBe(64 * 1024 * 1024);
    const given = await run(['start', '--orchestrator', 'o:1', '--data-dir', dir, '--log-ship-level', 'warn'], { CONCLAVE_LOG_SPOOL_MAX_BYTES: '1048576' });
    expect(given.started[0]?.logTap?.level).toBe('warn');
    expect(given.started[0]?.logSpoolMaxBytes).toBe(1_048_576);
    const tooSmall = await run(['start', '--orchestrator', 'o:1', '--data-dir', dir, '--log-spool-max-bytes', '1000']);
    expect(tooSmall.code).toBe(2);
    expect(tooSmall.stderr).toMatch(/logSpoolMaxBytes \(from flag, env CONCLAVE_LOG_SPOOL_MAX_BYTES\)/);
  });

  it('missing or invalid settings are NODE-STATE-703, exit 2, and the agent is not started', async () => {
    const r = await run(['start']);
    expect(r.code).toBe(2);
    expect(r.started).toEqual([]);
    expect(r.stderr).toMatch(/^NODE-STATE-703 invalid node agent configuration: dataDir \(env CONCLAVE_DATA_DIR\)/);
    const address = await run(['start', '--data-dir', dir, '--orchestrator', 'no-port']);
    expect(address.code).toBe(2);
    expect(address.stderr).toMatch(/orchestrator \(from flag, env CONCLAVE_ORCHESTRATOR\)/);
    const bad = await run(['start', '--orchestrator', 'o:1', '--data-dir', dir, '--slots', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/slots \(from flag, env CONCLAVE_SLOTS\)/);
  });

  it('a startup failure prints one coded line and exits 1', async () => {
    const r = await run(['start', '--orchestrator', 'o:1', '--data-dir', dir], {}, {
      startNodeAgent: async () => {
        throw new ConclaveError('NODE-NET-601', { detail: 'o:1' });
      },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^NODE-NET-601 orchestrator unreachable: o:1 — /);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });

  it('help exits 0, an unknown option 2', async () => {
    expect((await run(['start', '--help'])).code).toBe(0);
    const bogus = await run(['start', '--bogus']);
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toMatch(/^NODE-STATE-705 command line not understood: unknown option '--bogus' — [^\n]*\n$/);
  });

  it('takes TLS settings from flags, env and the YAML file', async () => {
    const flags = await run(['start', '--orchestrator', 'o:1', '--data-dir', dir, '--tls-ca', '/etc/conclave/orch.pem']);
    expect(flags.code).toBe(0);
    expect(flags.started[0]).toMatchObject({ tlsCa: '/etc/conclave/orch.pem' });
    expect(flags.started[0]?.tls).toBeUndefined();
    const env = await run(['start', '--orchestrator', 'o:1', '--data-dir', dir], { CONCLAVE_TLS_CA: '/from/env.pem', CONCLAVE_TLS: 'true' });
    expect(env.started[0]).toMatchObject({ tlsCa: '/from/env.pem', tls: true });
    const file = join(dir, 'tls.yaml');
    await writeFile(file, 'tlsCa: /from/file.pem\n');
    const yaml = await run(['start', '--orchestrator', 'o:1', '--data-dir', dir, '--config', file, '--tls']);
    expect(yaml.started[0]).toMatchObject({ tlsCa: '/from/file.pem', tls: true });
  });

  it('reads the join string from --join-file or CONCLAVE_JOIN; --join still works', async () => {
    const joinFile = join(dir, 'join');
    await writeFile(joinFile, 'conclave-join:v1:from-file\n', { mode: 0o600 });
    const fromFile = await run(['start', '--data-dir', dir, '--join-file', joinFile]);
    expect(fromFile.code).toBe(0);
    expect(fromFile.started[0]?.join).toBe('conclave-join:v1:from-file');
    const fromEnv = await run(['start', '--data-dir', dir], { CONCLAVE_JOIN: 'conclave-join:v1:from-env' });
    expect(fromEnv.started[0]?.join).toBe('conclave-join:v1:from-env');
    const fromFlag = await run(['start', '--data-dir', dir, '--join', 'conclave-join:v1:from-flag']);
    expect(fromFlag.started[0]?.join).toBe('conclave-join:v1:from-flag');
    const missing = await run(['start', '--data-dir', dir, '--join-file', join(dir, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.started).toEqual([]);
    expect(missing.stderr).toMatch(/^NODE-STATE-703 invalid node agent configuration: joinFile \(--join-file, env CONCLAVE_JOIN_FILE\) .*ENOENT/);
  });

  it('creates logs/ 0700 under the data dir, and tightens an existing 0755 one', async () => {
    const dataDir = join(dir, 'modes');
    await mkdir(join(dataDir, 'logs'), { recursive: true, mode: 0o755 });
    await chmod(join(dataDir, 'logs'), 0o755);
    const r = await run(['start', '--orchestrator', 'o:1', '--data-dir', dataDir, '--log-level', 'error'], {}, { createLogger: undefined });
    expect(r.code).toBe(0);
    expect((await stat(join(dataDir, 'logs'))).mode & 0o777).toBe(0o700);
  });
});
