import { describe, expect, it } from 'vitest';
import type { NodeInfo } from '@conclave/protocol';
import { logFilterOf, logTailParamsAsGiven, logTailSearchParams, parseLogTailQuery } from './log-tail-query.js';

const parse = (query: string) => parseLogTailQuery(new URLSearchParams(query));

describe('log tail query', () => {
  it('reads every filter, ignoring empty ones', () => {
    expect(parse('prefix=node&prefix=ORCH,chat&node=alpha&section=net&level=WARN&job=j1&extra=1')).toEqual({
      query: { prefixes: ['NODE', 'ORCH', 'CHAT'], node: 'alpha', section: 'NET', level: 'warn', job: 'j1' },
    });
    expect(parse('prefix=&node=&section=&level=&job=')).toEqual({ query: { prefixes: [] } });
  });

  it('refuses values outside their sets, and long ones, with ORCH-REQ-261 as `orchestrator logs` does', () => {
    const refusal = (query: string) => {
      const parsed = parse(query);
      return 'error' in parsed ? { code: parsed.error.code, message: parsed.error.message } : parsed;
    };
    expect(refusal('prefix=SYS')).toEqual({ code: 'ORCH-REQ-261', message: 'malformed log query: prefix "SYS": want one of ORCH-, NODE-, CHAT-, MODEL-' });
    expect(refusal('section=FOO')).toEqual({ code: 'ORCH-REQ-261', message: expect.stringContaining('section "FOO": want one of AUTH,') });
    expect(refusal('level=trace')).toEqual({ code: 'ORCH-REQ-261', message: 'malformed log query: level "trace": want one of error, warn, info, debug' });
    expect(refusal(`job=${'x'.repeat(129)}`)).toEqual({ code: 'ORCH-REQ-261', message: 'malformed log query: job is longer than 128 characters' });
    // The CLI's spellings are taken too.
    expect(parse('prefix=node-,ORCH')).toEqual({ query: { prefixes: ['NODE', 'ORCH'] } });
  });

  it('round-trips through the stream URL', () => {
    const parsed = parse('prefix=NODE,CHAT&node=a b&level=info');
    if (!('query' in parsed)) throw parsed.error;
    expect(parseLogTailQuery(logTailSearchParams(parsed.query))).toEqual(parsed);
    expect(logTailSearchParams(parsed.query).toString()).toBe('prefix=NODE%2CCHAT&node=a+b&level=info');
  });

  it('resolves a node as `orchestrator logs` does: an id, else the connected one of a name; ORCH-REQ-260 for neither', () => {
    const nodes: NodeInfo[] = [
      { id: 'abc123', name: 'alpha', state: 'connected' }, { id: 'def456', name: 'beta', state: 'disconnected', lastSeenMs: 9 },
      { id: 'fed654', name: 'beta', state: 'connected', lastSeenMs: 1 },
    ];
    expect(logFilterOf({ prefixes: ['NODE'], node: 'alpha', level: 'warn', job: 'j' }, nodes)).toEqual({
      prefixes: ['NODE'], nodeId: 'abc123', level: 'warn', jobId: 'j',
    });
    expect(logFilterOf({ prefixes: [], node: 'def456' }, nodes)).toEqual({ nodeId: 'def456' });
    expect(logFilterOf({ prefixes: [], node: 'beta' }, nodes)).toEqual({ nodeId: 'fed654' });
    expect(() => logFilterOf({ prefixes: [], node: 'gamma' }, nodes)).toThrow(expect.objectContaining({ code: 'ORCH-REQ-260' }));
    expect(logFilterOf({ prefixes: [] }, nodes)).toEqual({});
  });

  it('keeps only the tail’s own parameters, as given, for the stream of a refused query', () => {
    expect(logTailParamsAsGiven(new URLSearchParams('level=loud&x=1&node=a b&prefix=SYS')).toString()).toBe('level=loud&node=a+b&prefix=SYS');
  });
});
