import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError, captureLogger } from '@conclave/common';
import { loadConclaveProtos } from '@conclave/protocol';
import {
  checkOperatorToken, checkTransport, isLoopbackPeer, loadOrCreateOperatorToken, OPERATOR_TOKEN_FILE, operatorAuthInterceptor,
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

describe('operatorAuthInterceptor', () => {
  const ran: string[] = [];
  const logs = captureLogger('ORCH');
  let server: grpc.Server;
  let client: grpc.Client;

  beforeAll(async () => {
    const unary = (name: string) => (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
      ran.push(name);
      callback(null, {});
    };
    const handlers = {
      SubmitJob: unary('SubmitJob'), GetJob: unary('GetJob'), CancelJob: unary('CancelJob'), ListNodes: unary('ListNodes'),
      ListModels: unary('ListModels'), CreateJoinToken: unary('CreateJoinToken'), ListJoinTokens: unary('ListJoinTokens'),
      RevokeJoinToken: unary('RevokeJoinToken'), ApproveNode: unary('ApproveNode'), RevokeNode: unary('RevokeNode'),
      DrainNode: unary('DrainNode'), UndrainNode: unary('UndrainNode'),
      AddModel: (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        ran.push('AddModel');
        call.on('data', () => undefined);
        call.on('end', () => callback(null, {}));
      },
      WatchJob: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        ran.push('WatchJob');
        call.end();
      },
    };
    server = new grpc.Server({ interceptors: [operatorAuthInterceptor(TOKEN, logs.logger)] });
    server.addService(loadConclaveProtos().conclave.v1.Control.service, handlers as unknown as grpc.UntypedServiceImplementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  afterAll(() => {
    client?.close();
    server?.forceShutdown();
  });

  const raw = (b: Buffer) => b;
  const authorized = (authorization?: string) => metadata(authorization);

  function unaryCall(method: string, authorization?: string, body = Buffer.alloc(0)): Promise<grpc.StatusObject> {
    return new Promise((resolve) => {
      const call = client.makeUnaryRequest(`/conclave.v1.Control/${method}`, raw, raw, body, authorized(authorization), () => undefined);
      call.on('status', resolve);
    });
  }

  it('answers UNAUTHENTICATED on the headers: no handler runs, and a large request body is not waited for', async () => {
    ran.length = 0;
    for (const method of ['SubmitJob', 'ListNodes', 'CreateJoinToken', 'RevokeNode']) {
      const status = await unaryCall(method, undefined, method === 'SubmitJob' ? Buffer.alloc(3 * 1024 * 1024) : Buffer.alloc(0));
      expect(status.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(status.details).toMatch(/^ORCH-AUTH-553 /);
    }
    const upload = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client.makeClientStreamRequest('/conclave.v1.Control/AddModel', raw, raw, authorized('Bearer wrong-token-wrong-token'), () => undefined);
      call.on('status', resolve);
      call.write(Buffer.alloc(1024));
    });
    expect(upload.code).toBe(grpc.status.UNAUTHENTICATED);
    const watch = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client.makeServerStreamRequest('/conclave.v1.Control/WatchJob', raw, raw, Buffer.alloc(0), authorized());
      call.on('error', () => undefined);
      call.on('status', resolve);
    });
    expect(watch.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(ran).toEqual([]);
    expect(logs.lines.some((line) => line.includes('ORCH-AUTH-553') && line.includes('method=SubmitJob') && line.includes('reason=missing'))).toBe(true);
    expect(logs.lines.join('\n')).not.toContain(TOKEN);
  });

  it('lets a call with the token through to the handler', async () => {
    ran.length = 0;
    expect((await unaryCall('GetJob', `Bearer ${TOKEN}`)).code).toBe(grpc.status.OK);
    expect(ran).toEqual(['GetJob']);
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

  });
});
