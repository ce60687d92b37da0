import { describe, expect, it } from 'vitest';
import { READINESS_PREFIX, formatReadinessLine, parseReadinessLine, type Readiness } from './readiness.js';

describe('the readiness line', () => {
  it('is one line, the prefix then JSON, and parses back to what was written', () => {
    const ready: Readiness = { role: 'orchestrator', grpc: '127.0.0.1:7400', httpPort: 7401, tls: false, fingerprint: 'SHA256:abc' };
    const line = formatReadinessLine(ready);
    expect(line).toBe(`CONCLAVE-READY {"role":"orchestrator","grpc":"127.0.0.1:7400","httpPort":7401,"tls":false,"fingerprint":"SHA256:abc"}\n`);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    expect(parseReadinessLine(line.trimEnd())).toEqual(ready);
  });

  it('is undefined for any other line, a log line that quotes the prefix included', () => {
    expect(parseReadinessLine('2026-01-01T00:00:00.000Z INFO  ORCH-STATE orchestrator ready grpc=127.0.0.1:7400')).toBeUndefined();
    expect(parseReadinessLine(`note: ${READINESS_PREFIX}{"role":"node-agent","node":"n1","httpPort":null}`)).toBeUndefined();
    expect(parseReadinessLine('')).toBeUndefined();
  });

  it('throws on the prefix followed by anything but a readiness of a known role', () => {
    expect(() => parseReadinessLine(`${READINESS_PREFIX}{not json`)).toThrow(/not JSON/);
    expect(() => parseReadinessLine(`${READINESS_PREFIX}{"role":"toaster"}`)).toThrow(/malformed readiness line/);
    expect(() => parseReadinessLine(`${READINESS_PREFIX}{"role":"node-agent","httpPort":null}`)).toThrow(/node/);
  });

  it('keeps null for a listener that is off, and ignores fields it does not know', () => {
    const line = `${READINESS_PREFIX}{"role":"node-agent","node":"n1","httpPort":null,"later":"field"}`;
    expect(parseReadinessLine(line)).toEqual({ role: 'node-agent', node: 'n1', httpPort: null });
  });
});
