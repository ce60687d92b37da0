// createControlClient's operator token and TLS options against a real gRPC server on port 0.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createControlClient } from './clients.js';
import type { ControlClient } from './generated/conclave/v1/Control.js';
import { loadConclaveProtos } from './load-protos.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A Control server whose ListNodes answers with the authorization header it received. */
async function startServer(credentials: grpc.ServerCredentials): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback({ code: grpc.status.UNIMPLEMENTED });
  const handlers: grpc.UntypedServiceImplementation = {};
  const service = loadConclaveProtos().conclave.v1.Control.service;
  for (const name of Object.keys(service)) handlers[name] = unimplemented;
  handlers.ListNodes = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) =>
    callback(null, { nodes: [{ id: String(call.metadata.get('authorization')[0] ?? '(none)') }] });
  server.addService(service, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
}

function authorizationSeen(client: ControlClient): Promise<string> {
  return new Promise((resolve, reject) => {
    client.ListNodes({}, { deadline: Date.now() + 5_000 }, (err, response) => {
      if (err) reject(err);
      else resolve(response?.nodes[0]?.id ?? '');
    });
  });
}

describe('createControlClient', () => {
  const servers: grpc.Server[] = [];
  const clients: ControlClient[] = [];
  afterAll(() => {
    for (const c of clients) c.close();
    for (const s of servers) s.forceShutdown();
  });

  it('puts "authorization: Bearer <token>" on every call when operatorToken is set', async () => {
    const { server, port } = await startServer(grpc.ServerCredentials.createInsecure());
    servers.push(server);
    const withToken = createControlClient(`127.0.0.1:${port}`, { operatorToken: 'tok-123' });
    const without = createControlClient(`127.0.0.1:${port}`);
    clients.push(withToken, without);
    expect(await authorizationSeen(withToken)).toBe('Bearer tok-123');
    expect(await authorizationSeen(withToken)).toBe('Bearer tok-123');
    expect(await authorizationSeen(without)).toBe('(none)');
  });

  describe.skipIf(!hasOpenssl())('with tls', () => {
    let dir: string;
    let cert: Buffer;
    let key: Buffer;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'conclave-tls-'));
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
          '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
          '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
        { stdio: 'ignore' },
      );
      cert = readFileSync(join(dir, 'cert.pem'));
      key = readFileSync(join(dir, 'key.pem'));
    });
    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    it('connects over TLS trusting the given CA, and sends the token', async () => {
      const { server, port } = await startServer(grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }]));
      servers.push(server);
      const client = createControlClient(`127.0.0.1:${port}`, { tls: { ca: cert }, operatorToken: 'tok-tls' });
      clients.push(client);
      expect(await authorizationSeen(client)).toBe('Bearer tok-tls');
      // Without the CA the self-signed certificate is not trusted.
      const untrusting = createControlClient(`127.0.0.1:${port}`, { tls: {} });
      clients.push(untrusting);
      await expect(authorizationSeen(untrusting)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    });
  });
});
