import { describe, expect, it } from 'vitest';
import type { NodeInfo } from '@conclave/protocol';
import { logFilterOf, logTailSearchParams, parseLogTailQuery } from './log-tail-query.js';

const parse = (query: string) => parseLogTailQuery(new URLSearchParams(query));

describe('log tail query', () => {
  it('reads every filter, ignoring empty ones', () => {
    expect(parse('prefix=node&prefix=ORCH,chat&node=alpha&section=net&level=WARN&job=j1&extra=1')).toEqual({
      query: { prefixes: ['NODE', 'ORCH', 'CHAT'], node: 'alpha', section: 'NET', level: 'warn', job: 'j1' },
    });
    expect(parse('prefix=&node=&section=&level=&job=')).toEqual({ query: { prefixes: [] } });
  });

  it('refuses values outside their sets, and long ones', () => {
    expect(parse('prefix=SYS')).toEqual({ error: 'prefix must be one of ORCH, NODE, CHAT, MODEL' });
    expect(parse('section=FOO')).toHaveProperty('error');
    expect(parse('level=trace')).toHaveProperty('error');
    expect(parse(`job=${'x'.repeat(129)}`)).toEqual({ error: 'job is longer than 128 characters' });
  });

  it('round-trips through the stream URL', () => {
    const parsed = parse('prefix=NODE,CHAT&node=a b&level=info');
    if (!('query' in parsed)) throw new Error(parsed.error);
    expect(parseLogTailQuery(logTailSearchParams(parsed.query))).toEqual(parsed);
    expect(logTailSearchParams(parsed.query).toString()).toBe('prefix=NODE%2CCHAT&node=a+b&level=info');
  });

  it('resolves a node name to its id; an id or an unknown value passes as it is', () => {
    const nodes: NodeInfo[] = [{ id: 'abc123', name: 'alpha' }, { id: 'def456', name: 'beta' }];
    expect(logFilterOf({ prefixes: ['NODE'], node: 'alpha', level: 'warn', job: 'j' }, nodes)).toEqual({
      prefixes: ['NODE'], nodeId: 'abc123', level: 'warn', jobId: 'j',
    });
    expect(logFilterOf({ prefixes: [], node: 'def456' }, nodes)).toEqual({ nodeId: 'def456' });
    expect(logFilterOf({ prefixes: [], node: 'gamma' }, nodes)).toEqual({ nodeId: 'gamma' });
    expect(logFilterOf({ prefixes: [] }, nodes)).toEqual({});
  });
});
