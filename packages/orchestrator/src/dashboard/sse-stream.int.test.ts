import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SSE_RETRY_MS, SseStream, sseEvent } from './sse-stream.js';

/** More than loopback's socket buffers on both ends hold, so that a reader who stops blocks the writer. */
const BIG_EVENT = 'x'.repeat(32 * 2 ** 20);

let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
  server = undefined;
});

/** A server whose one route opens a stream and sends `BIG_EVENT`; resolves with its port and what happened. */
async function serve(stallTimeoutMs: number) {
  const seen = { stalledAfterMs: undefined as number | undefined, closedAtMs: undefined as number | undefined, openedAtMs: 0 };
  server = createServer((_req, res) => {
    seen.openedAtMs = Date.now();
    const stream = new SseStream(res, { headers: {}, stallTimeoutMs, onStalled: (ms) => (seen.stalledAfterMs = ms) });
    res.on('close', () => (seen.closedAtMs = Date.now()));
    stream.send('big', BIG_EVENT);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, seen };
}

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('SseStream on a real socket', () => {
  it('destroys a stream whose reader stopped reading once its writes stayed blocked past stallTimeoutMs', async () => {
    const { port, seen } = await serve(300);
    const socket = connect(port, '127.0.0.1');
    socket.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    // Never read: the socket takes what fits in its buffers, then the server's writes block.
    socket.pause();
    socket.on('error', () => undefined);
    try {
      await until(() => seen.closedAtMs !== undefined, 10_000);
      expect(seen.stalledAfterMs).toBeGreaterThanOrEqual(300);
      expect((seen.closedAtMs ?? 0) - seen.openedAtMs).toBeGreaterThanOrEqual(300);
    } finally {
      socket.destroy();
    }
  });

  it('keeps a stream whose reader takes what it is sent', async () => {
    const { port, seen } = await serve(5_000);
    const res = await fetch(`http://127.0.0.1:${port}/events`);
    const reader = res.body?.getReader();
    const expected = `retry: ${SSE_RETRY_MS}\n\n`.length + sseEvent('big', BIG_EVENT).length;
    let bytes = 0;
    while (bytes < expected && reader) {
      const { value, done } = await reader.read();
      if (done) break;
      bytes += value.length;
    }
    expect(bytes).toBe(expected);
    expect(seen.stalledAfterMs).toBeUndefined();
    expect(seen.closedAtMs).toBeUndefined();
    await reader?.cancel();
  });
});
