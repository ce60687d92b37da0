import { describe, expect, it } from 'vitest';
import { ConclaveError, isConclaveError, toConclaveError } from './conclave-error.js';

describe('ConclaveError', () => {
  it('takes message, section and status from the catalog', () => {
    const cause = new Error('ENOENT');
    const err = new ConclaveError('ORCH-STATE-702', { detail: 'port in use', data: { port: 6379 }, cause });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('ConclaveError');
    expect(err.code).toBe('ORCH-STATE-702');
    expect(err.message).toBe('redis-server exited or failed to start: port in use');
    expect(err.entry.section).toBe('STATE');
    expect(err.entry.status).toBe('UNAVAILABLE');
    expect(err.detail).toBe('port in use');
    expect(err.data).toEqual({ port: 6379 });
    expect(err.cause).toBe(cause);
    expect(String(err)).toBe('ConclaveError: redis-server exited or failed to start: port in use');
  });

  it('has no detail suffix and empty data by default', () => {
    const err = new ConclaveError('ORCH-NET-601');
    expect(err.message).toBe('Redis unreachable');
    expect(err.data).toEqual({});
    expect(err.detail).toBeUndefined();
    expect('cause' in err).toBe(false);
  });

  it('wraps foreign errors and passes its own through', () => {
    const own = new ConclaveError('ORCH-NET-601');
    expect(toConclaveError(own, 'ORCH-STATE-702')).toBe(own);
    const cause = new Error('boom');
    const wrapped = toConclaveError(cause, 'ORCH-STATE-702');
    expect(wrapped.code).toBe('ORCH-STATE-702');
    expect(wrapped.detail).toBe('boom');
    expect(wrapped.cause).toBe(cause);
    expect(toConclaveError('text', 'ORCH-STATE-702').detail).toBe('text');
    expect(toConclaveError({ a: 1 }, 'ORCH-STATE-702').detail).toBe('{"a":1}');
    expect(isConclaveError(wrapped)).toBe(true);
    expect(isConclaveError(cause)).toBe(false);
    expect(isConclaveError(null)).toBe(false);
  });
});
