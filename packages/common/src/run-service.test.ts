import { describe, expect, it } from 'vitest';
import { ConclaveError } from './errors/conclave-error.js';
import { READINESS_PREFIX, type Readiness } from './readiness.js';
import { runService, type RunServiceOptions, type RunningService } from './run-service.js';
import { captureLogger } from './winston-logger.js';

const READY: Readiness = { role: 'node-agent', node: 'n-1', httpPort: null };

class StringOut {
  text = '';
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

function pending<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Runs a fake service: `service` overrides its parts, `options` the run's. */
function run(service: Partial<RunningService> = {}, options: Partial<RunServiceOptions<RunningService>> = {}) {
  const stdout = new StringOut();
  const stderr = new StringOut();
  const { logger, lines } = captureLogger('NODE');
  let closed = 0;
  const shutdown = pending<string>();
  const code = runService({
    start: async () => ({
      ready: Promise.resolve(READY),
      close: async () => {
        closed += 1;
      },
      ...service,
    }),
    shutdownRequested: () => shutdown.promise,
    logger,
    stdout,
    stderr,
    fallbackCode: 'NODE-STATE-707',
    ...options,
  });
  return { code, stdout, stderr, lines, shutdown, closed: () => closed };
}

describe('runService', () => {
  it('writes the readiness line once ready, closes on the shutdown request and exits 0', async () => {
    const r = run({}, { logMeta: () => ({ node: 'n-1' }), stoppedMessage: 'node agent stopped' });
    await tick();
    expect(r.stdout.text).toBe(`${READINESS_PREFIX}${JSON.stringify(READY)}\n`);
    expect(r.closed()).toBe(0);
    r.shutdown.resolve('SIGTERM');
    expect(await r.code).toBe(0);
    expect(r.closed()).toBe(1);
    expect(r.stderr.text).toBe('');
    expect(r.lines).toEqual([
      expect.stringMatching(/ INFO +NODE-CLEAN shutting down .*signal=SIGTERM.*node=n-1/),
      expect.stringMatching(/ INFO +NODE-CLEAN node agent stopped .*node=n-1/),
    ]);
  });

  it('a start-up failure is one coded line and its exit code: 2 for bad input, 1 otherwise; nothing else', async () => {
    const bad = run({}, { start: () => Promise.reject(new ConclaveError('NODE-AUTH-540', { detail: 'garbage' })) });
    expect(await bad.code).toBe(2);
    expect(bad.stderr.text).toMatch(/^NODE-AUTH-540 [^\n]*: garbage — [^\n]*\n$/);
    const uncoded = run({}, { start: () => Promise.reject(new RangeError('boom')) });
    expect(await uncoded.code).toBe(1);
    expect(uncoded.stderr.text).toMatch(/^NODE-STATE-707 [^\n]*: boom — [^\n]*\n$/);
    expect([bad.stdout.text, uncoded.stdout.text, ...bad.lines, ...uncoded.lines]).toEqual(['', '']);
  });

  it('a fatal event is its coded line and exit 1, even for an INVALID_ARGUMENT code; the service is closed, never announced', async () => {
    const fatal = pending<unknown>();
    const r = run({ ready: new Promise(() => undefined), fatal: fatal.promise }, { stoppedMessage: 'stopped' });
    fatal.resolve(new ConclaveError('NODE-AUTH-502', { detail: 'bad frame' }));
    expect(await r.code).toBe(1);
    expect(r.stderr.text).toMatch(/^NODE-AUTH-502 [^\n]*: bad frame — [^\n]*\n$/);
    expect(r.stdout.text).toBe('');
    expect(r.closed()).toBe(1);
    expect(r.lines).toEqual([]);
  });

  it('a service that can never get ready exits 2 without a line of its own (its cause is logged where it happened)', async () => {
    const r = run({ ready: Promise.reject(new ConclaveError('NODE-STATE-707', { detail: 'no model' })) });
    expect(await r.code).toBe(2);
    expect([r.stdout.text, r.stderr.text]).toEqual(['', '']);
    expect(r.closed()).toBe(1);
  });

  it('a readiness that comes after the shutdown request is not written', async () => {
    const ready = pending<Readiness>();
    let finishClose: () => void = () => undefined;
    const r = run({ ready: ready.promise, close: () => new Promise<void>((resolve) => (finishClose = resolve)) });
    await tick();
    r.shutdown.resolve('SIGINT');
    await tick();
    ready.resolve(READY);
    await tick();
    finishClose();
    expect(await r.code).toBe(0);
    expect(r.stdout.text).toBe('');
  });

  it('the shutdown announcement can be replaced (the local fleet prints it)', async () => {
    const said: string[] = [];
    const r = run({}, { onShutdownRequested: (reason) => said.push(`${reason}: stopping`) });
    r.shutdown.resolve('SIGHUP');
    expect(await r.code).toBe(0);
    expect(said).toEqual(['SIGHUP: stopping']);
    expect(r.lines).toEqual([]);
  });

  it('a close that fails is logged under CLEAN and exits 1', async () => {
    const r = run({ close: () => Promise.reject(new ConclaveError('NODE-STATE-707', { detail: 'outbox unwritable' })) }, { stoppedMessage: 'stopped' });
    r.shutdown.resolve('SIGTERM');
    expect(await r.code).toBe(1);
    expect(r.lines.at(-1)).toMatch(/ ERROR +NODE-STATE-707 .*outbox unwritable/);
    expect(r.lines.some((l) => l.includes('stopped'))).toBe(false);
  });

  it('a close that hangs past closeTimeoutMs exits 1 with a coded line in the log', async () => {
    const r = run({ close: () => new Promise(() => undefined) }, { closeTimeoutMs: 50 });
    r.shutdown.resolve('SIGTERM');
    expect(await r.code).toBe(1);
    expect(r.lines.at(-1)).toMatch(/ ERROR +NODE-STATE-707 .*shutdown did not finish within 50 ms/);
  });
});
