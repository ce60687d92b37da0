import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConclaveError } from './errors/conclave-error.js';
import { SECTIONS, type Logger } from './logger.js';
import { captureLogger, createLogger, nullLogger, UNEXPECTED_ERROR_MESSAGE } from './winston-logger.js';

const TAG = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (ERROR|WARN |INFO |DEBUG) (ORCH|NODE|CHAT|MODEL)-([A-Z]+)(-\d{3})? /;
const SECRETS = ['hunter2', 's3cr3t-token', 'nested-api-key', 'pw-in-url', 'cookie-value'];

function logSecrets(logger: Logger): void {
  logger.info('AUTH', 'session opened', {
    token: 's3cr3t-token',
    password: 'hunter2',
    config: { redis: { apiKey: 'nested-api-key' } },
    url: 'redis://:pw-in-url@127.0.0.1:6379',
    headers: { Cookie: 'cookie-value' },
  });
  logger.failure(new Error('cannot dial redis://default:pw-in-url@10.0.0.1:6379'), { section: 'NET' });
  logger.failure(new ConclaveError('ORCH-NET-601', { detail: 'redis://:hunter2@h:1', data: { password: 'hunter2' } }));
}

function streamLines(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending += chunk.toString();
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      lines.push(...parts);
      callback();
    },
  });
  return { stream, lines };
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('captureLogger', () => {
  it('puts prefix and section on every line, and the code when there is one', () => {
    const { logger, lines } = captureLogger('NODE', { node: 'ab12' });
    for (const section of SECTIONS) logger.info(section, 'tick');
    logger.failure(new ConclaveError('NODE-LOAD-104', { detail: 'digest mismatch', data: { model: 'sha256:aa' } }));
    logger.warn('STATE', 'config fallback', { code: 'NODE-STATE-703' });
    expect(lines).toHaveLength(SECTIONS.length + 2);
    for (const [i, section] of SECTIONS.entries()) {
      expect(lines[i]).toMatch(TAG);
      expect(lines[i]).toContain(` NODE-${section} tick node=ab12`);
    }
    expect(lines.at(-2)).toMatch(/ ERROR NODE-LOAD-104 model file failed verification node=ab12 model=sha256:aa detail="digest mismatch"$/);
    expect(lines.at(-1)).toMatch(/ WARN {2}NODE-STATE-703 config fallback node=ab12$/);
  });

  it('logs foreign errors at meta.section or STATE', () => {
    const { logger, lines } = captureLogger('ORCH');
    logger.failure(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), { section: 'NET', attempt: 2 }, 'warn');
    logger.failure('plain string');
    expect(lines[0]).toMatch(/ WARN {2}ORCH-NET unexpected error attempt=2 err="connect ECONNREFUSED" code=ECONNREFUSED$/);
    expect(lines[1]).toMatch(new RegExp(` ERROR ORCH-STATE ${UNEXPECTED_ERROR_MESSAGE} err="plain string"$`));
  });

  it('child loggers add bindings, later keys win', () => {
    const { logger, lines } = captureLogger('NODE', { node: 'ab12' });
    const job = logger.child({ jobId: 'j1' }).child({ attempt: 1 });
    job.info('JOB', 'job started', { attempt: 2 });
    logger.info('JOB', 'idle');
    expect(lines[0]).toMatch(/ INFO {2}NODE-JOB job started node=ab12 jobId=j1 attempt=2$/);
    expect(lines[1]).toMatch(/ INFO {2}NODE-JOB idle node=ab12$/);
  });

  it('never prints secrets', () => {
    const { logger, lines, jsonLines } = captureLogger('ORCH');
    logSecrets(logger);
    const all = [...lines, ...jsonLines].join('\n');
    for (const secret of SECRETS) expect(all).not.toContain(secret);
    expect(lines[0]).toContain('token=[REDACTED] password=[REDACTED] config={"redis":{"apiKey":"[REDACTED]"}}');
    expect(lines[0]).toContain('url=redis://:***@127.0.0.1:6379');
  });

  it('nullLogger drops everything, through its children too: nothing reaches stdout, stderr or the console', async () => {
    const written: string[] = [];
    const record = (...args: unknown[]): void => void written.push(args.map(String).join(' '));
    const spies = [
      vi.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown) => (record(chunk), true)),
      vi.spyOn(process.stderr, 'write').mockImplementation((chunk: unknown) => (record(chunk), true)),
      ...(['log', 'info', 'warn', 'error', 'debug'] as const).map((method) => vi.spyOn(console, method).mockImplementation(record)),
    ];
    try {
      for (const logger of [nullLogger, nullLogger.child({ node: 'ab12' }).child({ jobId: 'j1' })]) {
        for (const level of ['error', 'warn', 'info', 'debug'] as const) logger[level]('NET', 'x', { err: new Error('y'), password: 'hunter2' });
        logger.failure(new ConclaveError('ORCH-NET-601', { detail: 'redis://:hunter2@h:1' }), { section: 'NET' });
        logger.failure('not even an Error');
      }
      // A logger that writes through a stream may do so a tick later.
      await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(written).toEqual([]);
  });
});

describe('createLogger', () => {
  it('writes human lines to the console stream, the sink, and honours the level', async () => {
    const { stream, lines } = streamLines();
    const sinkLines: string[] = [];
    const logger = createLogger({
      prefix: 'MODEL',
      level: 'info',
      console: stream,
      sink: (line) => sinkLines.push(line),
      now: () => new Date('2026-11-27T10:00:00.000Z'),
    });
    logger.debug('REQ', 'hidden');
    logger.info('REQ', 'request done', { requestId: 'r1', ms: 4 });
    logger.failure(new ConclaveError('MODEL-STATE-703', { detail: 'port: expected number' }));
    await logger.close();
    expect(sinkLines).toEqual([
      '2026-11-27T10:00:00.000Z INFO  MODEL-REQ request done requestId=r1 ms=4',
      '2026-11-27T10:00:00.000Z ERROR MODEL-STATE-703 invalid model server configuration detail="port: expected number"',
    ]);
    expect(lines).toEqual(sinkLines);
  });

  it('writes redacted JSON lines to a rotated file in the dir', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conclave-log-'));
    dirs.push(dir);
    const { stream, lines } = streamLines();
    const logger = createLogger({ prefix: 'NODE', bindings: { node: 'ab12' }, console: stream, file: { dir: join(dir, 'logs') } });
    logger.info('LOAD', 'model loaded', { model: 'm1' });
    logSecrets(logger);
    await logger.close();
    const files = readdirSync(join(dir, 'logs')).filter((f) => f.endsWith('.log'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^node-\d{4}-\d\d-\d\d\.log$/);
    const text = readFileSync(join(dir, 'logs', files[0] ?? ''), 'utf8');
    const records = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records).toHaveLength(4);
    expect(records[0]).toMatchObject({ level: 'info', prefix: 'NODE', section: 'LOAD', message: 'model loaded', node: 'ab12', model: 'm1' });
    expect(records[3]).toMatchObject({ level: 'error', section: 'NET', code: 'ORCH-NET-601', password: '[REDACTED]' });
    for (const secret of SECRETS) {
      expect(text).not.toContain(secret);
      expect(lines.join('\n')).not.toContain(secret);
    }
    expect(lines).toHaveLength(4);
    for (const line of lines) expect(line).toMatch(TAG);
  });

  it('keeps log files to this user: the dir 0700 and every file in it 0600, also when they existed wider', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conclave-log-'));
    dirs.push(dir);
    const logs = join(dir, 'logs');
    mkdirSync(logs, { mode: 0o755 });
    chmodSync(logs, 0o755);
    writeFileSync(join(logs, 'node-2020-01-01.log'), '{}\n', { mode: 0o644 });
    chmodSync(join(logs, 'node-2020-01-01.log'), 0o644);
    const logger = createLogger({ prefix: 'NODE', console: false, file: { dir: logs } });
    logger.info('LOAD', 'model loaded');
    await logger.close();
    expect(statSync(logs).mode & 0o777).toBe(0o700);
    const files = readdirSync(logs);
    expect(files.filter((f) => f.endsWith('.log')).length).toBe(2);
    for (const file of files) expect([file, statSync(join(logs, file)).mode & 0o777]).toEqual([file, 0o600]);

    const fresh = join(dir, 'a', 'new', 'logs');
    const second = createLogger({ prefix: 'ORCH', console: false, file: { dir: fresh } });
    second.info('STATE', 'orchestrator ready');
    await second.close();
    expect(statSync(fresh).mode & 0o777).toBe(0o700);
    for (const file of readdirSync(fresh)) expect([file, statSync(join(fresh, file)).mode & 0o777]).toEqual([file, 0o600]);
  });
});
