import { describe, expect, it } from 'vitest';
import { CATALOG, buildCatalog, lookupError, parseErrorCode } from './index.js';

const entry = { message: 'm', recovery: 'r', status: 'INTERNAL' } as const;

describe('error catalog', () => {
  it('is sorted by code, unique and well formed', () => {
    const codes = CATALOG.map((e) => e.code);
    expect(codes).toEqual([...codes].sort());
    expect(new Set(codes).size).toBe(codes.length);
    for (const e of CATALOG) {
      expect(parseErrorCode(e.code)).toEqual({ prefix: e.prefix, section: e.section, number: e.number });
      expect(e.message.length).toBeGreaterThan(0);
      expect(e.recovery.length).toBeGreaterThan(0);
    }
  });

  it('holds the seed entries of common', () => {
    expect(lookupError('ORCH-STATE-701').recovery).toContain('apt-get install redis-server');
    expect(lookupError('ORCH-STATE-701').recovery).toContain('--redis-url');
    expect(lookupError('ORCH-NET-601').retryable).toBe(true);
    for (const code of ['ORCH-STATE-703', 'NODE-STATE-703', 'MODEL-STATE-703'] as const) {
      expect(lookupError(code).status).toBe('INVALID_ARGUMENT');
    }
  });

  it('parses codes and enforces section ranges', () => {
    expect(parseErrorCode('NODE-LOAD-104')).toEqual({ prefix: 'NODE', section: 'LOAD', number: 104 });
    expect(parseErrorCode('ORCH-SCHED-851')).toEqual({ prefix: 'ORCH', section: 'SCHED', number: 851 });
    expect(parseErrorCode('ORCH-JOB-851')).toBeUndefined();
    expect(parseErrorCode('NODE-LOAD-204')).toBeUndefined();
    expect(parseErrorCode('HOST-LOAD-104')).toBeUndefined();
    expect(parseErrorCode('NODE-LOAD-1040')).toBeUndefined();
    expect(parseErrorCode('NODE-HEALTH-950')).toBeUndefined();
    expect(parseErrorCode('NODE-CLEAN-950')).toBeDefined();
  });

  it('rejects duplicates across blocks and malformed codes', () => {
    expect(() => buildCatalog([{ 'NODE-LOAD-101': entry }, { 'NODE-LOAD-101': entry }])).toThrow(/duplicate code NODE-LOAD-101/);
    expect(() => buildCatalog([{ 'NODE-LOAD-201': entry }])).toThrow(/malformed code NODE-LOAD-201/);
    expect(() => buildCatalog([{ 'node-load-101': entry }])).toThrow(/malformed/);
    expect([...buildCatalog([{ 'NODE-REQ-201': entry, 'NODE-LOAD-101': entry }]).keys()]).toEqual([
      'NODE-LOAD-101',
      'NODE-REQ-201',
    ]);
  });

  it('throws on an unknown code reached by a cast', () => {
    expect(() => lookupError('NODE-LOAD-199' as never)).toThrow(/unknown code/);
  });
});
