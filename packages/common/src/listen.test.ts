import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConclaveError } from './errors/conclave-error.js';
import { assertPortFree, listenOrFail } from './listen.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

async function heldPort(): Promise<number> {
  const holder = createServer();
  servers.push(holder);
  return listenOrFail(holder, { port: 0, host: '127.0.0.1', errorCode: 'ORCH-NET-605', listener: 'HTTP' });
}

describe('listenOrFail', () => {
  it('names the listener, the address and why a taken port cannot be bound', async () => {
    const port = await heldPort();
    const second = createServer();
    servers.push(second);
    const err = await listenOrFail(second, { port, host: '127.0.0.1', errorCode: 'NODE-NET-604', listener: 'local HTTP' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConclaveError);
    expect((err as ConclaveError).code).toBe('NODE-NET-604');
    expect((err as ConclaveError).message).toBe(
      `local HTTP port unavailable: local HTTP 127.0.0.1:${port}: another process is listening there (EADDRINUSE)`,
    );
    expect((err as ConclaveError).entry.recovery).toContain('--http-port');
  });
});

describe('assertPortFree', () => {
  it('fails on a taken port', async () => {
    const port = await heldPort();
    await expect(assertPortFree({ port, host: '127.0.0.1', errorCode: 'ORCH-NET-604', listener: 'gRPC' })).rejects.toMatchObject({
      code: 'ORCH-NET-604',
    });
  });

  it('lets go of a free port, so that the real bind gets it', async () => {
    const port = await heldPort();
    await new Promise((resolve) => servers.pop()?.close(resolve));
    await assertPortFree({ port, host: '127.0.0.1', errorCode: 'ORCH-NET-604', listener: 'gRPC' });
    const real = createServer();
    servers.push(real);
    await expect(listenOrFail(real, { port, host: '127.0.0.1', errorCode: 'ORCH-NET-604', listener: 'gRPC' })).resolves.toBe(port);
  });
});
