import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError, captureLogger } from '@conclave/common';
import type { ControlHandlers } from '@conclave/protocol';
import {
  checkOperatorToken, checkTransport, isLoopbackPeer, loadOrCreateOperatorToken, OPERATOR_TOKEN_FILE, withOperatorAuth,
} from './operator-auth.js';

const TOKEN = 'A'.repeat(20) + 'secret-token-value';

function metadata(authorization?: string | string[]): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const value of [authorization ?? []].flat()) m.add('authorization', value);
  return m;
}

function codeOf(fn: () => void): { code?: string; message?: string; reason?: unknown } {
  try {
    fn();
    return {};
  } catch (err) {
    if (!(err instanceof ConclaveError)) throw err;
    return { code: err.code, message: err.message, reason: err.data.reason };
  }
}

describe('loadOrCreateOperatorToken', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'conclave-optoken-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('generates 32 random bytes as base64url in a 0600 file, then reads the same token back', () => {
    const dataDir = join(dir, 'fresh');
    const { logger, jsonLines } = captureLogger('ORCH');
    const token = loadOrCreateOperatorToken({ dataDir, logger });
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const path = join(dataDir, OPERATOR_TOKEN_FILE);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8').trim()).toBe(token);
    expect(loadOrCreateOperatorToken({ dataDir })).toBe(token);
    expect(jsonLines.join('\n')).toContain('created operator token');
    expect(jsonLines.join('\n')).not.toContain(token);
  });

  it('takes the environment over the file', () => {
    const dataDir = join(dir, 'env');
    loadOrCreateOperatorToken({ dataDir });
    expect(loadOrCreateOperatorToken({ dataDir, fromEnv: TOKEN })).toBe(TOKEN);
    expect(codeOf(() => loadOrCreateOperatorToken({ dataDir, fromEnv: 'short' })).code).toBe('ORCH-AUTH-555');
  });

  it.skipIf(process.platform === 'win32')('refuses a file that group or others may read', () => {
    const dataDir = join(dir, 'loose');
    loadOrCreateOperatorToken({ dataDir });
    chmodSync(join(dataDir, OPERATOR_TOKEN_FILE), 0o640);
    const failure = codeOf(() => loadOrCreateOperatorToken({ dataDir }));
    expect(failure.code).toBe('ORCH-AUTH-554');
    expect(failure.message).toContain('0640');
  });

  it('refuses an empty or malformed file', () => {
    const dataDir = join(dir, 'empty');
    loadOrCreateOperatorToken({ dataDir });
    writeFileSync(join(dataDir, OPERATOR_TOKEN_FILE), '\n', { mode: 0o600 });
    expect(codeOf(() => loadOrCreateOperatorToken({ dataDir })).code).toBe('ORCH-AUTH-555');
  });
});

describe('checkOperatorToken', () => {
  it('accepts "Bearer <token>" (any case of the scheme)', () => {
    expect(codeOf(() => checkOperatorToken(metadata(`Bearer ${TOKEN}`), TOKEN))).toEqual({});
    expect(codeOf(() => checkOperatorToken(metadata(`bearer ${TOKEN}`), TOKEN))).toEqual({});
  });

  it('refuses a missing or wrong token with the same message', () => {
    const missing = codeOf(() => checkOperatorToken(metadata(), TOKEN));
    const wrong = codeOf(() => checkOperatorToken(metadata(`Bearer ${TOKEN}x`), TOKEN));
    const prefix = codeOf(() => checkOperatorToken(metadata(`Bearer ${TOKEN.slice(0, 10)}`), TOKEN));
    const scheme = codeOf(() => checkOperatorToken(metadata(`Basic ${TOKEN}`), TOKEN));
    const twice = codeOf(() => checkOperatorToken(metadata([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]), TOKEN));
    for (const failure of [missing, wrong, prefix, scheme, twice]) expect(failure.code).toBe('ORCH-AUTH-553');
    expect(new Set([missing, wrong, prefix, scheme, twice].map((f) => f.message)).size).toBe(1);
    expect(missing.reason).toBe('missing');
    expect(wrong.reason).toBe('mismatch');
  });
});

describe('withOperatorAuth', () => {
  interface FakeCall {
    metadata: grpc.Metadata;
    request: unknown;
    getPeer(): string;
    emit(event: string, err?: Error): void;
    emitted?: Error & Partial<grpc.StatusObject>;
  }
  const fakeCall = (authorization?: string): FakeCall => {
    const call: FakeCall = {
      metadata: metadata(authorization),
      request: {},
      getPeer: () => 'ipv4:127.0.0.1:5555',
      emit(_event, err) {
        call.emitted = err as FakeCall['emitted'];
      },
    };
    return call;
  };

  function handlers(ran: string[]): ControlHandlers {
    const unary = (name: string) => (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
      ran.push(name);
      callback(null, {});
    };
    return {
      SubmitJob: unary('SubmitJob'),
      GetJob: unary('GetJob'),
      CancelJob: unary('CancelJob'),
      ListNodes: unary('ListNodes'),
      ListModels: unary('ListModels'),
      CreateJoinToken: unary('CreateJoinToken'),
      ListJoinTokens: unary('ListJoinTokens'),
      RevokeJoinToken: unary('RevokeJoinToken'),
      ApproveNode: unary('ApproveNode'),
      RevokeNode: unary('RevokeNode'),
      AddModel: unary('AddModel'),
      WatchJob: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        ran.push('WatchJob');
        call.end();
      },
    } as unknown as ControlHandlers;
  }

  it('answers UNAUTHENTICATED before a unary or client-streaming handler runs', () => {
    const ran: string[] = [];
    const { logger, lines } = captureLogger('ORCH');
    const wrapped = withOperatorAuth(handlers(ran), TOKEN, logger);
    for (const name of ['SubmitJob', 'ListNodes', 'CreateJoinToken', 'RevokeNode', 'AddModel'] as const) {
      let answered: Partial<grpc.StatusObject> | undefined;
      (wrapped[name] as (call: unknown, cb: (err: unknown) => void) => void)(fakeCall(), (err) => {
        answered = err as Partial<grpc.StatusObject>;
      });
      expect(answered?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(answered?.details).toMatch(/^ORCH-AUTH-553 /);
    }
    expect(ran).toEqual([]);
    expect(lines.some((line) => line.includes('ORCH-AUTH-553') && line.includes('method=SubmitJob') && line.includes('reason=missing'))).toBe(true);
    expect(lines.join('\n')).not.toContain(TOKEN);
  });

  it('ends a server-streaming call with UNAUTHENTICATED', () => {
    const ran: string[] = [];
    const wrapped = withOperatorAuth(handlers(ran), TOKEN, captureLogger('ORCH').logger);
    const call = fakeCall(`Bearer wrong-token-wrong-token`);
    (wrapped.WatchJob as unknown as (call: unknown) => void)(call);
    expect(ran).toEqual([]);
    expect(call.emitted?.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('lets a call with the token through to the handler', () => {
    const ran: string[] = [];
    const wrapped = withOperatorAuth(handlers(ran), TOKEN, captureLogger('ORCH').logger);
    let error: unknown = 'not called';
    (wrapped.GetJob as unknown as (call: unknown, cb: (err: unknown) => void) => void)(fakeCall(`Bearer ${TOKEN}`), (err) => {
      error = err;
    });
    (wrapped.WatchJob as unknown as (call: unknown) => void)({ ...fakeCall(`Bearer ${TOKEN}`), end: () => undefined });
    expect(error).toBeNull();
    expect(ran).toEqual(['GetJob', 'WatchJob']);
  });
});

describe('Control API transport', () => {
  it('knows loopback callers, whatever grpc-js spells them', () => {
    for (const peer of ['127.0.0.1:5000', 'ipv4:127.0.0.1:5000', '127.9.9.9:1', '::1:5000', '[::1]:5000', '::ffff:127.0.0.1:5000', 'unix:/tmp/s']) {
      expect(isLoopbackPeer(peer), peer).toBe(true);
    }
    for (const peer of ['10.0.0.5:5000', '192.168.1.2:1', '::ffff:10.0.0.1:5000', '2001:db8::1:5000', '128.0.0.1:2']) {
      expect(isLoopbackPeer(peer), peer).toBe(false);
    }
  });

  it('refuses a plaintext caller from the network with ORCH-AUTH-571, before its token is looked at; TLS or --insecure-control let it in', () => {
    const plaintext = { tls: false, insecureControl: false };
    expect(() => checkTransport('10.0.0.5:5000', plaintext)).toThrow(expect.objectContaining({ code: 'ORCH-AUTH-571' }));
    expect(() => checkTransport('127.0.0.1:5000', plaintext)).not.toThrow();
    expect(() => checkTransport('10.0.0.5:5000', { tls: true, insecureControl: false })).not.toThrow();
    expect(() => checkTransport('10.0.0.5:5000', { tls: false, insecureControl: true })).not.toThrow();

    const logs = captureLogger('ORCH');
    let answered: unknown;
    const wrapped = withOperatorAuth({ GetJob: () => undefined } as unknown as ControlHandlers, TOKEN, logs.logger, plaintext);
    (wrapped.GetJob as unknown as (call: unknown, cb: (err: unknown) => void) => void)(
      { metadata: new grpc.Metadata(), request: {}, getPeer: () => '10.0.0.5:5000' },
      (err) => (answered = err),
    );
    expect(answered).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/^ORCH-AUTH-571 /) });
  });
});
