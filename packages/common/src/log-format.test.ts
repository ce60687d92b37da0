import { describe, expect, it } from 'vitest';
import { ConclaveError } from './errors/conclave-error.js';
import { formatConsoleLine, formatJsonLine, isSecretKey, lineTag, maskUrlCredentials, redact, type LogRecord } from './log-format.js';

const time = new Date('2026-11-27T10:00:00.000Z');

function record(over: Partial<LogRecord>): LogRecord {
  return { time, level: 'info', prefix: 'NODE', section: 'LOAD', message: 'model loaded', meta: {}, ...over };
}

describe('formatConsoleLine', () => {
  it('renders time, padded level, tag, message and key=value pairs', () => {
    const line = formatConsoleLine(record({ meta: { node: 'ab12', model: 'sha256:abc', ms: 12, ok: true } }));
    expect(line).toBe('2026-11-27T10:00:00.000Z INFO  NODE-LOAD model loaded node=ab12 model=sha256:abc ms=12 ok=true');
  });

  it('puts the number in the tag for a catalog code of the same prefix and section', () => {
    const line = formatConsoleLine(
      record({ level: 'error', code: 'NODE-LOAD-104', message: 'model file failed verification', meta: { node: 'ab12' } }),
    );
    expect(line).toBe('2026-11-27T10:00:00.000Z ERROR NODE-LOAD-104 model file failed verification node=ab12');
  });

  it('prints a code of another section as code=', () => {
    const line = formatConsoleLine(record({ section: 'NET', code: 'NODE-LOAD-104', meta: {} }));
    expect(line).toBe('2026-11-27T10:00:00.000Z INFO  NODE-NET model loaded code=NODE-LOAD-104');
  });

  it('quotes values with spaces and renders objects as compact JSON', () => {
    const line = formatConsoleLine(record({ meta: { path: '/a b/c', dims: [1, 3], opts: { a: 1 }, empty: '', n: null } }));
    expect(line).toContain('path="/a b/c" dims=[1,3] opts={"a":1} empty="" n=null');
  });

  it('renders err as its message plus its code', () => {
    const err = redact(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }));
    expect(formatConsoleLine(record({ section: 'NET', meta: { err } }))).toContain(
      'err="connect ECONNREFUSED 127.0.0.1:1" code=ECONNREFUSED',
    );
    const own = redact(new ConclaveError('ORCH-NET-601', { detail: 'x' }));
    expect(formatConsoleLine(record({ meta: { err: own } }))).toContain('err="Redis unreachable: x" code=ORCH-NET-601');
  });
});

describe('formatConsoleLine and terminal control characters', () => {
  /** Every character a terminal may act on: C0, DEL, C1, and the bidi overrides and isolates. */
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

  it('escapes ESC and NUL in a bare value (no whitespace), which then is quoted', () => {
    const line = formatConsoleLine(record({ meta: { node: 'evil\u001b[2J\u0000name' } }));
    expect(line).toBe('2026-11-27T10:00:00.000Z INFO  NODE-LOAD model loaded node="evil\\u001b[2J\\u0000name"');
  });

  it('escapes DEL, C1 and the bidi controls, which JSON leaves raw, in quoted values, objects and errors', () => {
    const sneaky = 'a b\u007f\u009b31m\u202eevil\u2066x\u2069\u0085';
    const err = redact(new Error(`boom ${sneaky}`));
    const line = formatConsoleLine(record({ meta: { name: sneaky, nested: { k: sneaky }, list: [sneaky], err } }));
    expect(line).not.toMatch(CONTROLS);
    expect(line).toContain('name="a b\\u007f\\u009b31m\\u202eevil\\u2066x\\u2069\\u0085"');
    expect(line).toContain('nested={"k":"a b\\u007f');
    expect(line).toContain('err="boom a b\\u007f');
  });

  it('escapes control characters in the message and keeps one record on one line', () => {
    const line = formatConsoleLine(record({ message: 'model\nloaded\u001b]0;title\u0007', meta: { detail: 'x\r\ny' } }));
    expect(line).not.toMatch(CONTROLS);
    expect(line).toContain('model\\u000aloaded\\u001b]0;title\\u0007');
    expect(line).toContain('detail="x\\r\\ny"');
  });

  it('leaves printable text alone, non-ASCII letters included', () => {
    const line = formatConsoleLine(record({ meta: { name: 'café-ñ', path: '/a b/ü' } }));
    expect(line).toContain('name=café-ñ path="/a b/ü"');
  });
});

describe('formatJsonLine', () => {
  it('writes the fixed fields first and never lets meta shadow them', () => {
    const parsed = JSON.parse(formatJsonLine(record({ code: 'NODE-LOAD-104', meta: { node: 'ab12', level: 'x' } })));
    expect(parsed).toEqual({
      time: '2026-11-27T10:00:00.000Z',
      level: 'info',
      prefix: 'NODE',
      section: 'LOAD',
      code: 'NODE-LOAD-104',
      message: 'model loaded',
      node: 'ab12',
      meta_level: 'x',
    });
  });
});

describe('redaction', () => {
  it('recognises secret keys, but not counts of model tokens', () => {
    for (const key of ['password', 'pass', 'redisPassword', 'secret', 'token', 'joinToken', 'Authorization', 'apiKey', 'api_key', 'private-key', 'privateKey', 'cookie', 'credentials']) {
      expect(isSecretKey(key, 'x'), key).toBe(true);
    }
    expect(isSecretKey('maxTokens', 128)).toBe(false);
    expect(isSecretKey('fencingToken', 7)).toBe(false);
    expect(isSecretKey('tokenizer', 'gpt2')).toBe(false);
    expect(isSecretKey('node', 'ab12')).toBe(false);
    expect(isSecretKey('token', 1234)).toBe(true);
  });

  it('redacts nested keys, masks URLs, survives cycles and bytes', () => {
    const cyclic: Record<string, unknown> = { name: 'a' };
    cyclic.self = cyclic;
    const out = redact({
      a: { b: { apiKey: 'k', keep: 'v' } },
      list: [{ token: 't' }],
      url: 'redis://:hunter2@127.0.0.1:6379/0',
      key: new Uint8Array(32),
      cyclic,
    });
    expect(out).toEqual({
      a: { b: { apiKey: '[REDACTED]', keep: 'v' } },
      list: [{ token: '[REDACTED]' }],
      url: 'redis://:***@127.0.0.1:6379/0',
      key: '[Uint8Array 32 bytes]',
      cyclic: { name: 'a', self: '[Circular]' },
    });
  });

  it('masks credentials in URLs anywhere in a string', () => {
    expect(maskUrlCredentials('dial redis://user:s3cret@h:1 and http://u:p@x/y')).toBe('dial redis://user:***@h:1 and http://u:***@x/y');
    expect(maskUrlCredentials('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });
});

describe('lineTag', () => {
  it('ignores codes that are not in the catalog', () => {
    expect(lineTag('NODE', 'LOAD', 'NODE-LOAD-199')).toBe('NODE-LOAD');
    expect(lineTag('ORCH', 'STATE', 'ORCH-STATE-701')).toBe('ORCH-STATE-701');
  });
});
