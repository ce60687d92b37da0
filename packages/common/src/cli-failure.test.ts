import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { describeStartupFailure, describeUsageError, oneLine, onOutputGone } from './cli-failure.js';
import { EXIT_FAILURE, EXIT_USAGE } from './exit-codes.js';
import { ConclaveError } from './errors/conclave-error.js';

describe('describeStartupFailure', () => {
  it('prints a coded error on one line, exit 1 unless the catalog calls it bad input', () => {
    const unavailable = describeStartupFailure(new ConclaveError('ORCH-NET-605', { detail: 'HTTP 127.0.0.1:7401: in use' }), 'ORCH-STATE-707');
    expect(unavailable.line).toMatch(/^ORCH-NET-605 HTTP port unavailable: HTTP 127\.0\.0\.1:7401: in use — .*--http-port/);
    expect(unavailable.exitCode).toBe(EXIT_FAILURE);
    const badInput = describeStartupFailure(new ConclaveError('NODE-AUTH-540', { detail: 'missing fields' }), 'NODE-STATE-707');
    expect(badInput.exitCode).toBe(EXIT_USAGE);
  });

  it('joins a multi-line detail (a redis.log tail) into one line', () => {
    const err = new ConclaveError('ORCH-STATE-702', { detail: 'exit code 1; redis.log tail:\n  line one\n\nline two\n' });
    const { line } = describeStartupFailure(err, 'ORCH-STATE-707');
    expect(line).not.toContain('\n');
    expect(line).toContain('redis.log tail: | line one | line two');
  });

  it('codes an error that has no code with the fallback, keeping its message', () => {
    const { line, exitCode } = describeStartupFailure(new RangeError('port should be >= 0 and < 65536'), 'MODEL-STATE-707');
    expect(line).toMatch(/^MODEL-STATE-707 unexpected model server failure: port should be >= 0 and < 65536 — /);
    expect(exitCode).toBe(EXIT_FAILURE);
  });
});

describe('describeUsageError', () => {
  it("puts commander's message under the executable's code, exit 2", () => {
    const { line, exitCode } = describeUsageError("error: unknown option '--bogus'", 'NODE-STATE-705');
    expect(line).toMatch(/^NODE-STATE-705 command line not understood: unknown option '--bogus' — .*--help/);
    expect(exitCode).toBe(EXIT_USAGE);
  });
});

describe('oneLine', () => {
  it('drops blank lines and trims', () => {
    expect(oneLine(' a \n\n b\r\nc ')).toBe('a | b | c');
  });
});

describe('onOutputGone', () => {
  it('reports a write to a reader that has gone, and re-throws other stream errors', () => {
    const stream = new PassThrough();
    const gone: unknown[] = [];
    onOutputGone([stream], (s) => gone.push(s));
    stream.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    expect(gone).toEqual([stream]);
    expect(() => stream.emit('error', Object.assign(new Error('disk on fire'), { code: 'EFIRE' }))).toThrow('disk on fire');
  });
});
