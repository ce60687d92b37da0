import { execFileSync } from 'node:child_process';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConclaveError, captureLogger } from '@conclave/common';
import type { SidecarRequest__Output, SidecarResponse } from '@conclave/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { SidecarClient } from './sidecar-client.js';
import { FrameReader, decodeRequest, encodeResponseFrame } from './sidecar-frames.js';

/**
 * A server speaking the real framing, for what the sidecar itself cannot be made to do: answer
 * out of order, send a malformed or oversized frame, stop mid-frame, hang.
 */
interface TestServer {
  readonly path: string;
  readonly requests: SidecarRequest__Output[];
  readonly sockets: Socket[];
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sidecar-client-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function send(socket: Socket, response: SidecarResponse): void {
  for (const chunk of encodeResponseFrame(response)) socket.write(chunk);
}

async function startServer(onRequest: (req: SidecarRequest__Output, socket: Socket) => void): Promise<TestServer> {
  const dir = await tempDir();
  const path = join(dir, 'sidecar.sock');
  const requests: SidecarRequest__Output[] = [];
  const sockets: Socket[] = [];
  const server: Server = createServer((socket) => {
    sockets.push(socket);
    const reader = new FrameReader();
    socket.on('data', (chunk: Buffer) => {
      for (const frame of reader.push(chunk)) {
        const request = decodeRequest(frame);
        requests.push(request);
        onRequest(request, socket);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  await chmod(path, 0o600);
  const close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  cleanups.push(close);
  return { path, requests, sockets, close };
}

const logger = captureLogger('NODE').logger;

async function rejection(promise: Promise<unknown>): Promise<ConclaveError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof ConclaveError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

function echoInfer(request: SidecarRequest__Output, socket: Socket): void {
  if (request.body === 'infer') {
    send(socket, { id: request.id, infer: { outputs: request.infer!.inputs.map((t) => ({ ...t, name: `${t.name}:out` })), deviceMs: 2, batchedFrames: 1 } });
  } else if (request.body === 'deviceInfo') {
    send(socket, { id: request.id, deviceInfo: { arch: 'HAILO8', boardName: 'fake' } });
  }
}

describe('SidecarClient.connect', () => {
  it('refuses a socket with mode 0644 with NODE-AUTH-590 naming the mode', async () => {
    const server = await startServer(echoInfer);
    await chmod(server.path, 0o644);
    const err = await rejection(SidecarClient.connect(server.path, { logger }));
    expect(err.code).toBe('NODE-AUTH-590');
    expect(err.message).toContain('has mode 0644, want 0600');
  });

  it("refuses a socket another user owns with NODE-AUTH-590 naming the owner", async () => {
    const server = await startServer(echoInfer);
    const uid = process.getuid!();
    // Only root can give a file away; as another user, the socket of a uid we are not is what we test.
    if (uid !== 0) return;
    await chown(server.path, 4242, 4242);
    const err = await rejection(SidecarClient.connect(server.path, { logger }));
    expect(err.code).toBe('NODE-AUTH-590');
    expect(err.message).toContain('owned by uid 4242, the agent runs as uid 0');
  });

  it('refuses a path that is not a socket with NODE-AUTH-590', async () => {
    const path = join(await tempDir(), 'plain');
    await writeFile(path, '', { mode: 0o600 });
    const err = await rejection(SidecarClient.connect(path, { logger }));
    expect(err.code).toBe('NODE-AUTH-590');
    expect(err.message).toContain('is not a socket');
  });

  it('is NODE-NET-630 when there is no socket or nobody listens on it', async () => {
    const dir = await tempDir();
    const missing = await rejection(SidecarClient.connect(join(dir, 'none.sock'), { logger }));
    expect(missing.code).toBe('NODE-NET-630');
    expect(missing.message).toContain('no socket at');
    // A socket file left by a sidecar killed with -9: bound, never listened on, so connect is refused.
    const stale = join(dir, 'stale.sock');
    execFileSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale]);
    await chmod(stale, 0o600);
    const refused = await rejection(SidecarClient.connect(stale, { logger }));
    expect(refused.code).toBe('NODE-NET-630');
    expect(refused.message).toContain('ECONNREFUSED');
  });
});

describe('SidecarClient requests', () => {
  it('pipelines requests and matches answers given out of order', async () => {
    const held: Array<{ id: number; socket: Socket; request: SidecarRequest__Output }> = [];
    const server = await startServer((request, socket) => {
      held.push({ id: request.id, socket, request });
      if (held.length === 3) for (const h of held.reverse()) echoInfer(h.request, h.socket);
    });
    const client = await SidecarClient.connect(server.path, { logger });
    cleanups.push(() => client.close());
    const frame = (v: number) => ({ name: 'in', dtype: 'uint8', dims: [1, 4], data: Buffer.alloc(4, v) });
    const results = await Promise.all([1, 2, 3].map((v) => client.infer('m', [frame(v)], { timeoutMs: 1_000 })));
    expect(results.map((r) => r.outputs[0]!.data[0])).toEqual([1, 2, 3]);
    expect(results[0]!.outputs[0]!.name).toBe('in:out');
    expect(server.requests.map((r) => r.infer?.timeoutMs)).toEqual([1_000, 1_000, 1_000]);
    expect(client.inFlight).toBe(0);
  });

  it('turns a SidecarError into a ConclaveError of its code, or NODE-JOB-822 for an unknown code', async () => {
    const server = await startServer((request, socket) => {
      const code = request.body === 'unload' ? 'NODE-JOB-821' : 'HAILO_WEIRD';
      send(socket, { id: request.id, error: { code, message: 'device busy (hailortcli)', retryable: true } });
    });
    const client = await SidecarClient.connect(server.path, { logger });
    cleanups.push(() => client.close());
    const busy = await rejection(client.unload('m'));
    expect(busy.code).toBe('NODE-JOB-821');
    expect(busy.message).toContain('device busy (hailortcli)');
    const other = await rejection(client.health());
    expect(other.code).toBe('NODE-JOB-822');
    expect(other.message).toContain('HAILO_WEIRD');
  });

  it('rejects an answer of the wrong kind with NODE-NET-632 and keeps the connection', async () => {
    const server = await startServer((request, socket) => {
      if (request.body === 'health') send(socket, { id: request.id, unload: {} });
      else echoInfer(request, socket);
    });
    const client = await SidecarClient.connect(server.path, { logger });
    cleanups.push(() => client.close());
    expect((await rejection(client.health())).code).toBe('NODE-NET-632');
    expect((await client.deviceInfo()).arch).toBe('HAILO8');
  });

  it('gives up on a hung sidecar with NODE-JOB-820 after the timeout plus the grace', async () => {
    const server = await startServer(() => undefined);
    const client = await SidecarClient.connect(server.path, { logger, deadlineGraceMs: 50, requestTimeoutMs: 150 });
    cleanups.push(() => client.close());
    const started = performance.now();
    const err = await rejection(client.infer('m', [], { timeoutMs: 100 }));
    expect(err.code).toBe('NODE-JOB-820');
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect((await rejection(client.health())).code).toBe('NODE-JOB-820');
    expect(client.inFlight).toBe(0);
  });

  it('rejects an aborted request with NODE-JOB-801 and drops its late answer', async () => {
    const held: Array<() => void> = [];
    const server = await startServer((request, socket) => held.push(() => echoInfer(request, socket)));
    const client = await SidecarClient.connect(server.path, { logger });
    cleanups.push(() => client.close());
    const controller = new AbortController();
    const aborted = client.infer('m', [], { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 20));
    controller.abort();
    expect((await rejection(aborted)).code).toBe('NODE-JOB-801');
    for (const answer of held.splice(0)) answer();
    const next = client.deviceInfo();
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (const answer of held.splice(0)) answer();
    expect((await next).arch).toBe('HAILO8');
    expect((await rejection(client.infer('m', [], { signal: AbortSignal.abort() }))).code).toBe('NODE-JOB-801');
  });
});

describe('SidecarClient connection loss', () => {
  it('fails every pending request with NODE-NET-631 at once when the sidecar goes', async () => {
    const server = await startServer(() => undefined);
    const client = await SidecarClient.connect(server.path, { logger });
    const pending = [client.infer('m', [], { timeoutMs: 10_000 }), client.health(), client.deviceInfo()];
    const errors = pending.map((p) => rejection(p));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const started = performance.now();
    for (const s of server.sockets) s.destroy();
    const codes = (await Promise.all(errors)).map((e) => e.code);
    expect(performance.now() - started).toBeLessThan(100);
    expect(codes).toEqual(['NODE-NET-631', 'NODE-NET-631', 'NODE-NET-631']);
    expect((await client.closed).code).toBe('NODE-NET-631');
    expect((await rejection(client.health())).code).toBe('NODE-NET-631');
  });

  it('says so when the sidecar stops mid-frame', async () => {
    const server = await startServer((request, socket) => {
      const [head, body] = encodeResponseFrame({ id: request.id, deviceInfo: { arch: 'HAILO8', serial: 'x'.repeat(100) } });
      socket.write(head!);
      socket.end(body!.subarray(0, 10));
    });
    const client = await SidecarClient.connect(server.path, { logger });
    const err = await rejection(client.deviceInfo());
    expect(err.code).toBe('NODE-NET-631');
    expect(err.message).toMatch(/mid-frame \(10 of \d+ bytes\)/);
  });

  it('ends the connection on an oversized frame with NODE-NET-632', async () => {
    const server = await startServer((_request, socket) => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(2048);
      socket.write(head);
    });
    const client = await SidecarClient.connect(server.path, { logger, maxFrameBytes: 1024 });
    const err = await rejection(client.health());
    expect(err.code).toBe('NODE-NET-632');
    expect((await client.closed).code).toBe('NODE-NET-632');
    expect(client.isClosed).toBe(true);
  });

  it('ends the connection on an undecodable frame with NODE-NET-632', async () => {
    const server = await startServer((_request, socket) => {
      const payload = Buffer.from([0x12, 0x64, 0x01]);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(payload.length);
      socket.write(Buffer.concat([head, payload]));
    });
    const client = await SidecarClient.connect(server.path, { logger });
    expect((await rejection(client.health())).code).toBe('NODE-NET-632');
    expect((await client.closed).code).toBe('NODE-NET-632');
  });

  it('close() fails pending requests and settles closed', async () => {
    const server = await startServer(() => undefined);
    const client = await SidecarClient.connect(server.path, { logger });
    const pending = rejection(client.health());
    await client.close();
    const err = await pending;
    expect(err.code).toBe('NODE-NET-631');
    expect(err.message).toContain('closed by the agent');
  });
});
