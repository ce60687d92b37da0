import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import OpenAI from 'openai';
import { captureLogger, isConclaveError, type CapturedLogger } from '@conclave/common';
import { DEMO_MODEL_DIR } from './demo-model.js';
import { FixedMemoryProbe } from './memory-probe.js';
import { startModelServer, type ModelServerHandle } from './model-server.js';

// Real onnxruntime in the real worker (dist/engine-worker.js: run `pnpm exec tsc -b packages/model-server`
// first) on the demo model, over real HTTP on port 0.

const MODEL = 'conclave-demo';
const GiB = 2 ** 30;

function post(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

async function metric(server: ModelServerHandle, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function readSse(response: Response): Promise<EventSourceMessage[]> {
  const events: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (e) => events.push(e) });
  const decoder = new TextDecoder();
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }));
  return events;
}

describe('model server, cold start with requests waiting for the load', () => {
  let server: ModelServerHandle;
  let logs: CapturedLogger;

  beforeAll(async () => {
    logs = captureLogger('MODEL');
    server = await startModelServer({ port: 0, whileLoading: 'wait', concurrency: 4, queueLimit: 200, logger: logs.logger });
  });
  afterAll(async () => {
    await server.close();
  });

  it('answers 100 concurrent requests against a cold server with exactly one session', async () => {
    expect(server.state).toBe('loading');
    const responses = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        post(`${server.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: `hello ${i}` }], max_tokens: 8 }),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(100).fill(200));
    const bodies = (await Promise.all(responses.map((r) => r.json()))) as Array<{ choices: Array<{ message: { content: string } }> }>;
    expect(new Set(bodies.map((b) => b.choices[0]?.message.content))).toEqual(new Set(['this is the conclave demo model. it']));
    expect(await metric(server, 'model_sessions_created_total')).toBe(1);
    expect(await metric(server, 'model_sessions_loaded')).toBe(1);
    expect(logs.lines.filter((l) => l.includes('to=loading'))).toHaveLength(1);
  });

  it('reports health, models and metrics', async () => {
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', state: 'ready', demo: true });
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { data: Array<{ id: string; owned_by: string }> };
    expect(models.data).toEqual([expect.objectContaining({ id: MODEL, owned_by: 'conclave (demo model)' })]);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    for (const name of [
      'model_time_to_first_token_seconds_bucket',
      'model_time_per_output_token_seconds_bucket',
      'model_tokens_generated_total',
      'model_queue_time_seconds_bucket',
      'model_requests_in_flight',
      'model_requests_waiting',
      'model_load_seconds',
      'model_sessions_loaded',
      'process_resident_memory_bytes',
    ]) {
      expect(text).toContain(name);
    }
  });

  it('streams the same text as the non-streaming answer, parsed by eventsource-parser', async () => {
    for (const [path, body] of [
      ['/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'tell me' }], max_tokens: 40, temperature: 0.9, seed: 7 }],
      ['/v1/completions', { model: MODEL, prompt: 'the text is', max_tokens: 40, temperature: 0.9, seed: 7 }],
    ] as const) {
      const plain = (await (await post(`${server.url}${path}`, body)).json()) as {
        choices: Array<{ message?: { content: string }; text?: string }>;
        usage: { completion_tokens: number };
      };
      const response = await post(`${server.url}${path}`, { ...body, stream: true, stream_options: { include_usage: true } });
      expect(response.headers.get('content-type')).toContain('text/event-stream');
      const events = await readSse(response);
      expect(events.at(-1)?.data).toBe('[DONE]');
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data) as {
        choices: Array<{ delta?: { content?: string }; text?: string; finish_reason: string | null }>;
        usage?: { completion_tokens: number } | null;
      });
      const streamed = chunks.map((c) => c.choices[0]?.delta?.content ?? c.choices[0]?.text ?? '').join('');
      const expected = plain.choices[0]?.message?.content ?? plain.choices[0]?.text;
      expect(streamed).toBe(expected);
      expect(streamed.length).toBeGreaterThan(20);
      expect(chunks.at(-1)?.usage?.completion_tokens).toBe(plain.usage.completion_tokens);
    }
  });

  it('works with the openai client, streaming and not', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 6,
    });
    expect(completion.choices[0]?.message.content).toBe('this is the conclave demo model');
    expect(completion.usage?.completion_tokens).toBe(6);
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 6,
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('this is the conclave demo model');
    const legacy = await client.completions.create({ model: MODEL, prompt: 'it is', max_tokens: 3 });
    // A completion continues its prompt: "it is" + " the conclave demo", as the tokenizer decodes them together.
    expect(legacy.choices[0]?.text).toBe(' the conclave demo');
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
  });

  it('stops generating at once when the client disconnects mid-stream', async () => {
    const controller = new AbortController();
    const response = await post(
      `${server.url}/v1/completions`,
      { model: MODEL, prompt: 'hello', max_tokens: 2000, ignore_eos: true, stream: true },
      { 'x-request-id': 'disconnect-test' },
      controller.signal,
    );
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    controller.abort();
    await until(async () => (await metric(server, 'model_generations_cancelled_total{reason="client_disconnect"}')) === 1);
    await until(() => logs.lines.some((l) => l.includes('generation ended') && l.includes('disconnect-test')));
    const ended = logs.lines.find((l) => l.includes('generation ended') && l.includes('disconnect-test')) ?? '';
    expect(ended).toContain('finishReason=cancelled');
    expect(Number(/tokens=(\d+)/.exec(ended)?.[1])).toBeLessThan(2000);
  });

  it('answers bad input with a 4xx, a code and a clear message, and keeps serving', async () => {
    const cases: Array<[string, unknown, number, string]> = [
      ['/v1/chat/completions', '{"model": "conclave-demo", "messages": [', 400, 'MODEL-REQ-202'],
      ['/v1/chat/completions', { model: MODEL, messages: [] }, 400, 'MODEL-REQ-203'],
      ['/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'x' }], temperature: 'warm' }, 400, 'MODEL-REQ-203'],
      ['/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, 400, 'MODEL-REQ-203'],
      ['/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 100_000 }, 400, 'MODEL-REQ-203'],
      ['/v1/completions', { model: MODEL, prompt: 'word '.repeat(2100) }, 400, 'MODEL-REQ-204'],
      ['/v1/completions', { model: MODEL, prompt: 'hello', max_tokens: 2048 }, 400, 'MODEL-REQ-204'],
      ['/v1/completions', { model: 'gpt-17', prompt: 'hello' }, 404, 'MODEL-REQ-205'],
      // The demo has no BOS to start an empty prompt from.
      ['/v1/completions', { model: MODEL, prompt: '' }, 400, 'MODEL-REQ-203'],
      ['/v1/embeddings', { model: MODEL, input: 'x' }, 404, 'MODEL-REQ-206'],
      ['/v1/completions', { model: MODEL, prompt: 'x'.repeat(2 ** 20 + 10) }, 400, 'MODEL-REQ-207'],
    ];
    for (const [path, body, status, code] of cases) {
      const response = await post(`${server.url}${path}`, body, { 'x-request-id': `bad-${code}` });
      const json = (await response.json()) as { error: { message: string; type: string; code: string } };
      expect([path, response.status, json.error.code]).toEqual([path, status, code]);
      expect(json.error.message.length).toBeGreaterThan(10);
      expect(json.error.type).toMatch(/_error$/);
    }
    const ok = await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'hello', max_tokens: 2 });
    expect(ok.status).toBe(200);
    // Every line about a request carries its correlation id.
    const tagged = logs.lines.filter((l) => l.includes('MODEL-REQ-204'));
    expect(tagged.length).toBeGreaterThan(0);
    expect(tagged.every((l) => l.includes('requestId=bad-MODEL-REQ-204'))).toBe(true);
  });
});

describe('model server under limits: auth, loading, queue, memory', () => {
  const probe = new FixedMemoryProbe({ limitBytes: 8 * GiB, usedBytes: 1 * GiB });
  const KEY = 'sk-test-9f8e7d6c';
  let server: ModelServerHandle;
  let logs: CapturedLogger;
  const auth = { authorization: `Bearer ${KEY}` };
  const longRequest = { model: MODEL, prompt: 'hello', max_tokens: 1500, ignore_eos: true };

  beforeAll(async () => {
    logs = captureLogger('MODEL');
    server = await startModelServer({
      port: 0,
      concurrency: 1,
      queueLimit: 0,
      apiKeys: [KEY],
      logger: logs.logger,
      memory: { probe, softThreshold: 0.5, hardThreshold: 0.8, marginBytes: 0, sampleIntervalMs: 50, recoveryGraceMs: 200 },
    });
  });
  afterAll(async () => {
    await server.close();
    expect(logs.lines.join('\n')).not.toContain(KEY);
  });

  it('answers 503 with Retry-After while loading, then 200', async () => {
    expect(server.state).toBe('loading');
    const loading = await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'hi' }, auth);
    expect(loading.status).toBe(503);
    expect(loading.headers.get('retry-after')).toBe('2');
    expect(((await loading.json()) as { error: { code: string } }).error.code).toBe('MODEL-REQ-208');
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { error: { code: string } }).error.code).toBe('MODEL-HEALTH-901');
    await server.ready;
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  it('answers 401 in the OpenAI error shape without a key or with a wrong one', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: KEY }] as Array<Record<string, string>>) {
      const response = await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'hi' }, headers);
      expect(response.status).toBe(401);
      expect(await response.json()).toEqual({
        error: { message: 'missing or invalid API key', type: 'authentication_error', code: 'MODEL-AUTH-501', param: null },
      });
    }
    expect((await fetch(`${server.url}/v1/models`, { headers: auth })).status).toBe(200);
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  it('answers 429 beyond the concurrency and queue limits', async () => {
    const first = post(`${server.url}/v1/completions`, longRequest, auth);
    await until(async () => (await metric(server, 'model_requests_in_flight')) === 1);
    const second = await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'hi' }, auth);
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('2');
    expect(((await second.json()) as { error: { code: string; type: string } }).error).toMatchObject({
      code: 'MODEL-REQ-201',
      type: 'rate_limit_error',
    });
    expect((await first).status).toBe(200);
  });

  it('refuses new requests above the soft threshold with 503', async () => {
    probe.set({ usedBytes: 5 * GiB });
    const response = await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'hi' }, auth);
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('2');
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('MODEL-MEM-401');
    probe.set({ usedBytes: 1 * GiB });
    await until(async () => (await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'hi', max_tokens: 2 }, auth)).status === 200);
  });

  it('above the hard threshold cancels running work, frees caches and recycles the worker if memory stays high', async () => {
    const running = post(`${server.url}/v1/completions`, { ...longRequest, max_tokens: 2000 }, auth);
    await until(async () => (await metric(server, 'model_requests_in_flight')) === 1);
    probe.set({ usedBytes: 7 * GiB });
    const response = await running;
    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('MODEL-MEM-402');
    await until(() => logs.lines.some((l) => l.includes('MODEL-MEM-403')));
    probe.set({ usedBytes: 1 * GiB });
    await until(async () => (await fetch(`${server.url}/health`)).status === 200);
    expect(await metric(server, 'model_sessions_created_total')).toBe(2);
    expect(await metric(server, 'model_sessions_loaded')).toBe(1);
    expect(logs.lines.some((l) => l.includes('KV caches freed'))).toBe(true);
    const after = await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'hi', max_tokens: 2 }, auth);
    expect(after.status).toBe(200);
  });
});

describe('model server load refusals', () => {
  it('refuses to load a model that does not fit in free memory', async () => {
    const logs = captureLogger('MODEL');
    const probe = new FixedMemoryProbe({ limitBytes: 1 * GiB, usedBytes: 1 * GiB - 100_000 });
    const server = await startModelServer({ port: 0, logger: logs.logger, memory: { probe, marginBytes: 0, softThreshold: 1, hardThreshold: 1 } });
    try {
      const err = await server.ready.catch((e: unknown) => e);
      expect(isConclaveError(err) ? err.code : err).toBe('MODEL-LOAD-104');
      const health = await fetch(`${server.url}/health`);
      expect(health.status).toBe(503);
      expect(((await health.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'MODEL-HEALTH-902' });
      expect(await metric(server, 'model_sessions_created_total')).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('stops a request at its timeout with 504, and serves in-process generate() through the same limits', async () => {
    const server = await startModelServer({ port: 0, logger: captureLogger('MODEL').logger, requestTimeoutMs: 150 });
    try {
      await server.ready;
      const response = await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'hello', max_tokens: 2040, ignore_eos: true });
      expect(response.status).toBe(504);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('MODEL-REQ-209');
      const result = await server.generate({ messages: [{ role: 'user', content: 'hi' }], maxTokens: 6 });
      expect(result).toEqual({
        text: 'this is the conclave demo model',
        finishReason: 'length',
        usage: { prompt_tokens: 3, completion_tokens: 6, total_tokens: 9 },
      });
      const aborted = await server.generate({ prompt: 'hello', maxTokens: 2000 }, AbortSignal.abort()).catch((e: unknown) => e);
      expect(isConclaveError(aborted) && aborted.code).toBe('MODEL-REQ-210');
    } finally {
      await server.close();
    }
  });

  it('reports a model onnxruntime cannot parse as failed, once, without a reload loop', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'broken-model-'));
    cpSync(DEMO_MODEL_DIR, dir, { recursive: true });
    // Starts like a ModelProto (passes the header check), then is garbage.
    writeFileSync(join(dir, 'onnx', 'model.onnx'), Buffer.from([0x08, 0x07, 0x12, 0xff, 0xff, 0x01, 0x02]));
    const logs = captureLogger('MODEL');
    const server = await startModelServer({ port: 0, modelDir: dir, logger: logs.logger });
    try {
      const err = await server.ready.catch((e: unknown) => e);
      expect(isConclaveError(err) ? err.code : err).toBe('MODEL-LOAD-103');
      await new Promise((r) => setTimeout(r, 300));
      expect(logs.lines.filter((l) => l.includes('to=loading'))).toHaveLength(1);
      const response = await post(`${server.url}/v1/completions`, { model: server.modelId, prompt: 'hi' });
      expect(response.status).toBe(503);
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain('MODEL-LOAD-103');
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a model directory with a missing file before listening', async () => {
    const err = await startModelServer({ port: 0, modelDir: '/nonexistent/model' }).catch((e: unknown) => e);
    expect(isConclaveError(err) && err.code).toBe('MODEL-LOAD-102');
  });
});
