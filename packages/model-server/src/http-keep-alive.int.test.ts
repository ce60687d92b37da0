import { Agent, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { captureLogger } from '@conclave/common';
import { startModelServer, type ModelServerHandle } from './model-server.js';

/** One request on the agent's pooled connection; resolves with the status and the client's local port. */
function get(url: string, agent: Agent): Promise<{ status: number; localPort: number }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/models`, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, localPort: req.socket?.localPort ?? -1 }));
    });
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('model server HTTP connections', () => {
  let server: ModelServerHandle;

  beforeAll(async () => {
    server = await startModelServer({ port: 0, logger: captureLogger('MODEL').logger });
    await server.ready;
  });
  afterAll(async () => {
    await server.close();
  });

  it('keeps an idle pooled connection open for 10 s, so the next request reuses it', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await get(server.url, agent);
      await sleep(10_000);
      const second = await get(server.url, agent);
      expect(first.status).toBe(200);
      expect(second.status).toBe(200);
      // The same socket: the server did not close it while it sat idle in the pool.
      expect(second.localPort).toBe(first.localPort);
      // The official client pools connections the same way.
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      await client.completions.create({ model: 'conclave-demo', prompt: 'it is', max_tokens: 2 });
      await sleep(10_000);
      const again = await client.completions.create({ model: 'conclave-demo', prompt: 'it is', max_tokens: 2 });
      expect(again.choices[0]?.text).toBe(' the conclave');
    } finally {
      agent.destroy();
    }
  }, 40_000);

  it('closes idle connections after the configured keep-alive timeout', async () => {
    const short = await startModelServer({ port: 0, keepAliveTimeoutMs: 300, headersTimeoutMs: 2_000, logger: captureLogger('MODEL').logger });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      await short.ready;
      const first = await get(short.url, agent);
      await sleep(1_000);
      const second = await get(short.url, agent);
      expect(second.status).toBe(200);
      expect(second.localPort).not.toBe(first.localPort);
    } finally {
      agent.destroy();
      await short.close();
    }
  });
});
