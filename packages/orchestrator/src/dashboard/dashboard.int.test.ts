import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ConclaveError, captureLogger } from '@conclave/common';
import type { NodeInfo } from '@conclave/protocol';
import { startHttpServer, type HttpServerHandle } from '../http-server.js';
import type { LogFilter, LogReader, StoredLogEntry } from '../logs/log-entry.js';
import { createDashboard, type DashboardOptions } from './dashboard.js';
import type { DashboardJob, DashboardRoom, DashboardSources } from './dashboard-sources.js';

const TOKEN = 'dashboard-test-token-0123456789abcdef';
const EVIL = '<script>alert(1)</script>';
const ESCAPED = '&lt;script&gt;alert(1)&lt;/script&gt;';

/** A log store in memory: `follow` yields the matching history, then each push. */
class FakeLogReader implements LogReader {
  private readonly entries: StoredLogEntry[] = [];
  private readonly waiters = new Set<() => void>();

  push(entry: Omit<StoredLogEntry, 'id' | 'fields'> & { fields?: Record<string, unknown> }): void {
    this.entries.push({ fields: {}, ...entry, id: `${this.entries.length + 1}-0` });
    for (const wake of this.waiters) wake();
  }

  async read(filter: LogFilter): Promise<StoredLogEntry[]> {
    const matching = this.entries.filter((e) => matches(e, filter));
    return filter.limit ? matching.slice(-filter.limit) : matching;
  }

  async *follow(filter: LogFilter, signal: AbortSignal): AsyncIterable<StoredLogEntry[]> {
    let seen = this.entries.length;
    yield await this.read(filter);
    while (!signal.aborted) {
      await new Promise<void>((resolve) => {
        this.waiters.add(resolve);
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      const fresh = this.entries.slice(seen).filter((e) => matches(e, filter));
      seen = this.entries.length;
      if (fresh.length > 0) yield fresh;
    }
  }
}

function matches(e: StoredLogEntry, f: LogFilter): boolean {
  const levels = ['error', 'warn', 'info', 'debug'];
  return (!f.prefixes || f.prefixes.includes(e.prefix)) && (!f.nodeId || e.node === f.nodeId)
    && (!f.level || levels.indexOf(e.level) <= levels.indexOf(f.level)) && (!f.jobId || e.jobId === f.jobId)
    && (!f.section || e.section === f.section);
}

interface Fixture {
  base: string;
  http: HttpServerHandle;
  nodes: NodeInfo[];
  jobs: DashboardJob[];
  rooms: DashboardRoom[];
  logs: FakeLogReader;
  lines: string[];
  /** Set: the registry fails with it. */
  nodesError?: Error;
}

let fixture: Fixture | undefined;

afterEach(async () => {
  await fixture?.http.close();
  fixture = undefined;
});

async function start(options: Pick<DashboardOptions, 'maxStreams' | 'refusalLogIntervalMs' | 'stalledStreamMs'> = {}): Promise<Fixture> {
  const { logger, lines } = captureLogger('ORCH');
  const nodes: NodeInfo[] = [{ id: 'a1b2c3d4e5f6a7b8c9d0', name: EVIL, state: 'connected', slots: 2, running: 0, backendActive: 'cpu', lastSeenMs: Date.now() }];
  const jobs: DashboardJob[] = [];
  const rooms: DashboardRoom[] = [{ name: 'fleet', headSeq: 1, members: 1, messages: [{ seq: 1, sender: 'operator', kind: 'text', text: `hi ${EVIL}`, atMs: Date.now() }] }];
  const logs = new FakeLogReader();
  const sources: DashboardSources = {
    nodes: async () => {
      if (fixture?.nodesError) throw fixture.nodesError;
      return nodes;
    },
    jobs: async (limit) => jobs.slice(0, limit),
    queue: async () => ({ waiting: jobs.filter((j) => j.state === 'queued').length }),
    chatRooms: async () => rooms,
  };
  const http = await startHttpServer({
    host: '127.0.0.1', port: 0, logger, metrics: new Registry(), readiness: async () => [],
    dashboard: { operatorToken: TOKEN, sources, updateIntervalMs: 100, ...options },
    logs,
  });
  fixture = { base: `http://127.0.0.1:${http.port}`, http, nodes, jobs, rooms, logs, lines };
  return fixture;
}

const bearer = { authorization: `Bearer ${TOKEN}` };

async function login(f: Fixture, token: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${f.base}/dashboard/login`, {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ token }).toString(),
  });
}

/** An open event stream: every event so far, and a wait for one that matches. */
async function openEvents(f: Fixture, query: string, headers: Record<string, string>) {
  const abort = new AbortController();
  const res = await fetch(`${f.base}/dashboard/events${query}`, { headers, signal: abort.signal });
  const events: Array<{ event: string; data: string }> = [];
  let ended = false;
  const wakers = new Set<() => void>();
  const pump = (async () => {
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const lines = block.split('\n');
          const event = lines.find((l) => l.startsWith('event: '))?.slice(7);
          if (event) events.push({ event, data: lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n') });
        }
        for (const wake of wakers) wake();
      }
    } catch {
      // Aborted by the test.
    }
    ended = true;
    for (const wake of wakers) wake();
  })();
  return {
    res,
    events,
    get ended() {
      return ended;
    },
    async next(event: string, test: (data: string) => boolean = () => true, timeoutMs = 5_000): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find((e) => e.event === event && test(e.data));
        if (found) return found.data;
        if (ended || Date.now() > deadline) throw new Error(`no ${event} event matching; got ${events.map((e) => e.event).join(',')}`);
        await new Promise<void>((resolve) => {
          wakers.add(resolve);
          setTimeout(resolve, 100);
        });
      }
    },
    async close() {
      abort.abort();
      await pump;
    },
    pump,
  };
}

describe('dashboard', () => {
  it('answers a visit without a session with the login form, and no fleet data', async () => {
    const f = await start();
    const res = await fetch(`${f.base}/dashboard`);
    const body = await res.text();
    expect(res.status).toBe(200);
    expect(body).toContain('<input id="token" name="token" type="password"');
    expect(body).not.toContain('a1b2c3d4e5f6');
    expect(res.headers.get('content-security-policy')).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(body).not.toMatch(/<script(?! defer src=)/);
    expect((await fetch(`${f.base}/dashboard/events`)).status).toBe(401);
  });

  it('refuses a wrong token with 401 and a coded warning that does not carry it', async () => {
    const f = await start();
    const res = await login(f, 'not-the-token-at-all');
    expect(res.status).toBe(401);
    expect(await res.text()).toContain('That is not the operator token.');
    expect(res.headers.get('set-cookie')).toBeNull();
    const line = f.lines.find((l) => l.includes('ORCH-AUTH-572'));
    expect(line).toMatch(/WARN +ORCH-AUTH-572 dashboard refused: operator token missing or wrong/);
    expect(line).toContain('reason=mismatch');
    expect(f.lines.join('\n')).not.toContain('not-the-token-at-all');
  });

  it('logs the refusals of one address once per interval, the next line counting those held back', async () => {
    const f = await start({ refusalLogIntervalMs: 1_000 });
    const refusals = () => f.lines.filter((l) => l.includes('ORCH-AUTH-572'));
    for (let i = 0; i < 20; i++) expect((await login(f, `wrong-token-${i}`)).status).toBe(401);
    expect((await login(f, '')).status).toBe(401);
    expect((await fetch(`${f.base}/dashboard`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
    expect(refusals()).toHaveLength(1);
    expect(refusals()[0]).toContain('suppressed=0');
    await sleep(1_100);
    expect((await login(f, '')).status).toBe(401);
    expect(refusals()).toHaveLength(2);
    expect(refusals()[1]).toContain('reason=missing');
    expect(refusals()[1]).toContain('suppressed=21');
  });

  it('logs in with the token: an HttpOnly, SameSite=Strict cookie that is not the token opens the page', async () => {
    const f = await start();
    const res = await login(f, TOKEN);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
    const setCookie = res.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/^conclave_dashboard=v1\.[^;]+; Path=\/dashboard; HttpOnly; SameSite=Strict; Max-Age=43200$/);
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0] ?? '';
    const page = await fetch(`${f.base}/dashboard`, { headers: { cookie } });
    const body = await page.text();
    expect(page.status).toBe(200);
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(body).toContain(`<span class="name">${ESCAPED}</span>`);
    expect(body).toContain(`hi ${ESCAPED}`);
    expect(body).not.toContain(EVIL);
    expect(body).toContain('sse-connect="/dashboard/events"');
    // A tampered cookie is only a missing session: the login form again.
    const tampered = await fetch(`${f.base}/dashboard`, { headers: { cookie: `${cookie}x` } });
    expect(await tampered.text()).toContain('type="password"');
    const out = await fetch(`${f.base}/dashboard/logout`, { method: 'POST', redirect: 'manual', headers: { cookie } });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
  });

  it('takes a bearer token on every route, and refuses a wrong one with 401', async () => {
    const f = await start();
    expect((await fetch(`${f.base}/dashboard`, { headers: bearer })).status).toBe(200);
    const wrong = await fetch(`${f.base}/dashboard`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } });
    expect(wrong.status).toBe(401);
    expect((await fetch(`${f.base}/dashboard/events`, { headers: { authorization: 'Basic abc' } })).status).toBe(401);
    // Both from this address within the interval: one line.
    expect(f.lines.filter((l) => l.includes('ORCH-AUTH-572'))).toHaveLength(1);
    const events = await openEvents(f, '', bearer);
    expect(events.res.status).toBe(200);
    expect(events.res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    await events.close();
  });

  it('pushes changed panels and new log lines over the event stream, escaped', async () => {
    const f = await start();
    f.logs.push({ timeMs: Date.now(), level: 'info', prefix: 'ORCH', section: 'STATE', message: 'old line' });
    const events = await openEvents(f, '', bearer);
    expect(await events.next('nodes')).toContain(ESCAPED);
    expect(await events.next('logs', (d) => d.includes('old line'))).toContain('<span class="tag">ORCH-STATE</span>');
    f.nodes.push({ id: 'ffff0000ffff0000', name: 'beta', state: 'connected', slots: 1, running: 1, lastSeenMs: Date.now() });
    expect(await events.next('nodes', (d) => d.includes('beta'))).toContain('data-node-id="ffff0000ffff0000"');
    f.jobs.unshift({ id: 'job-1', state: 'completed', kind: 'infer', model: 'affine', node: 'ffff0000ffff0000', attempts: 1, createdAtMs: Date.now(), finishedAtMs: Date.now(), runMs: 5 });
    expect(await events.next('jobs', (d) => d.includes('job-1'))).toContain('data-job-id="job-1" data-job-state="completed"');
    f.logs.push({ timeMs: Date.now(), level: 'warn', prefix: 'NODE', section: 'NET', code: 'NODE-NET-601', message: `lost ${EVIL}\r\nevent: nodes`, node: 'ffff0000ffff0000', nodeName: 'beta' });
    const logs = await events.next('logs', (d) => d.includes('NODE-NET-601'));
    expect(logs).toContain(`lost ${ESCAPED}`);
    expect(logs).not.toContain(EVIL);
    expect(logs.indexOf('NODE-NET-601')).toBeLessThan(logs.indexOf('old line'));
    await events.close();
  });

  it('follows the log tail with the page’s filters, a node given by name', async () => {
    const f = await start();
    f.nodes.push({ id: 'ffff0000ffff0000', name: 'beta', state: 'connected' });
    const events = await openEvents(f, '?prefix=NODE&node=beta&level=warn', bearer);
    await events.next('logs', (d) => d.includes('No matching log records yet.'));
    f.logs.push({ timeMs: Date.now(), level: 'info', prefix: 'NODE', section: 'NET', message: 'too low', node: 'ffff0000ffff0000' });
    f.logs.push({ timeMs: Date.now(), level: 'error', prefix: 'NODE', section: 'NET', message: 'other node', node: 'a1b2' });
    f.logs.push({ timeMs: Date.now(), level: 'warn', prefix: 'NODE', section: 'NET', message: 'wanted', node: 'ffff0000ffff0000' });
    const logs = await events.next('logs', (d) => d.includes('wanted'));
    expect(logs).not.toContain('too low');
    expect(logs).not.toContain('other node');
    await events.close();
  });

  it('shows a refused filter in the tail’s panel with its code, on the page and on its stream, and follows nothing', async () => {
    const f = await start();
    f.logs.push({ timeMs: Date.now(), level: 'warn', prefix: 'NODE', section: 'NET', message: 'any line', node: 'a1b2c3d4e5f6a7b8c9d0' });
    const page = await fetch(`${f.base}/dashboard?node=gamma&level=warn`, { headers: bearer });
    expect(page.status).toBe(404);
    const body = await page.text();
    expect(body).toContain('<div id="logs" sse-swap="logs"><p class="unavailable" role="alert">No live tail for this filter: <code class="code">ORCH-REQ-260</code> unknown node in a log filter: &quot;gamma&quot;</p></div>');
    // The form keeps what was typed; the stream asks for the same tail.
    expect(body).toContain('<input name="node" value="gamma"');
    expect(body).toContain('sse-connect="/dashboard/events?node=gamma&amp;level=warn"');
    const events = await openEvents(f, '?node=gamma&level=warn', bearer);
    expect(events.res.status).toBe(200);
    expect(await events.next('logs')).toContain('<code class="code">ORCH-REQ-260</code> unknown node in a log filter: &quot;gamma&quot;');
    expect(await events.next('nodes')).toContain('a1b2c3d4e5f6');
    await sleep(400);
    expect(events.events.filter((e) => e.event === 'logs')).toHaveLength(1);
    expect(events.events.some((e) => e.data.includes('any line'))).toBe(false);
    await events.close();

    const bad = await fetch(`${f.base}/dashboard?level=loud&prefix=NODE`, { headers: bearer });
    expect(bad.status).toBe(400);
    const badBody = await bad.text();
    expect(badBody).toContain('<code class="code">ORCH-REQ-261</code> malformed log query: level &quot;loud&quot;: want one of error, warn, info, debug');
    expect(badBody).toContain('sse-connect="/dashboard/events?level=loud&amp;prefix=NODE"');
    const badEvents = await openEvents(f, '?level=loud', bearer);
    expect(await badEvents.next('logs')).toContain('<code class="code">ORCH-REQ-261</code>');
    await badEvents.close();
  });

  it('says that a node filter waits on the registry when the registry did not answer, instead of calling the node unknown', async () => {
    const f = await start();
    f.nodesError = new ConclaveError('ORCH-STATE-710', { detail: 'Redis connection is reconnecting' });
    const page = await fetch(`${f.base}/dashboard?node=a1b2c3d4e5f6a7b8c9d0`, { headers: bearer });
    expect(page.status).toBe(503);
    const body = await page.text();
    expect(body).toContain('No live tail for this filter: <code class="code">ORCH-STATE-710</code> state store (Redis) unavailable: Redis connection is reconnecting');
    expect(body).toContain('nodes unavailable: <code class="code">ORCH-STATE-710</code>');
    expect(body).not.toContain('ORCH-REQ-260');
  });

  it('bounds the open streams, and ends them when the server closes', async () => {
    const f = await start({ maxStreams: 1 });
    const first = await openEvents(f, '', bearer);
    const second = await fetch(`${f.base}/dashboard/events`, { headers: bearer });
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('5');
    expect(f.lines.some((l) => l.includes('ORCH-NET-620'))).toBe(true);
    await first.next('nodes');
    await f.http.close();
    await first.pump;
    expect(first.ended).toBe(true);
    fixture = undefined;
  });

  it('caps the login form, refuses logins from other sites, and serves its assets', async () => {
    const f = await start();
    expect((await login(f, 'x'.repeat(5_000))).status).toBe(413);
    expect((await login(f, TOKEN, { origin: 'http://evil.example' })).status).toBe(403);
    expect((await login(f, TOKEN, { 'sec-fetch-site': 'cross-site', origin: f.base })).status).toBe(403);
    expect((await login(f, TOKEN, { 'sec-fetch-site': 'same-origin' })).status).toBe(303);
    expect((await login(f, TOKEN, { origin: f.base })).status).toBe(303);
    const htmx = await fetch(`${f.base}/dashboard/assets/htmx.min.js`);
    expect(htmx.status).toBe(200);
    expect(htmx.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await htmx.text()).length).toBeGreaterThan(10_000);
    expect((await fetch(`${f.base}/dashboard/assets/htmx-ext-sse.min.js`)).status).toBe(200);
    expect(await (await fetch(`${f.base}/dashboard/assets/dashboard.css`)).text()).toContain('.log-lines');
    expect((await fetch(`${f.base}/dashboard/assets/icon.svg`)).headers.get('content-type')).toBe('image/svg+xml');
    expect((await fetch(`${f.base}/dashboard/nothing`)).status).toBe(404);
    expect((await fetch(`${f.base}/dashboard`, { method: 'DELETE' })).status).toBe(405);
    expect((await fetch(`${f.base}/dashboardx`)).status).toBe(404);
    expect((await fetch(`${f.base}/healthz`)).status).toBe(200);
  });

  it('refuses plaintext callers from off this host unless told otherwise', async () => {
    const visit = (allowRemotePlaintext: boolean, host = '10.0.0.2:7401', remoteAddress = '10.1.2.3') => {
      const { logger, lines } = captureLogger('ORCH');
      const sources: DashboardSources = { nodes: async () => [], jobs: async () => [], queue: async () => ({}), chatRooms: async () => [] };
      const dashboard = createDashboard({ operatorToken: TOKEN, sources, logger, allowRemotePlaintext });
      let status = 0;
      const done = new Promise<void>((resolve) => {
        const res = {
          headersSent: false,
          writeHead(code: number) {
            status = code;
            return this;
          },
          end() {
            resolve();
            return this;
          },
        };
        const req = { url: '/dashboard', method: 'GET', headers: { host }, socket: { remoteAddress, remotePort: 4000 } };
        expect(dashboard.handle(req as unknown as IncomingMessage, res as unknown as ServerResponse)).toBe(true);
      });
      return done.then(() => ({ status, lines }));
    };
    const refused = await visit(false);
    expect(refused.status).toBe(403);
    expect(refused.lines.some((l) => l.includes('ORCH-AUTH-573') && l.includes('10.1.2.3'))).toBe(true);
    expect((await visit(true)).status).toBe(200);
    // Any client can claim a loopback Host: only the connection's own address counts.
    for (const host of ['127.0.0.1:7401', 'localhost:8080', '[::1]:7401']) expect((await visit(false, host)).status, host).toBe(403);
    // A loopback peer is a TLS proxy or a tunnel's end on this host, whatever name the browser used.
    expect((await visit(false, 'fleet.example.com', '127.0.0.1')).status).toBe(200);
    expect((await visit(false, '127.0.0.1:7401', '::ffff:127.0.0.1')).status).toBe(200);
    expect((await visit(false, 'localhost:7401', '::1')).status).toBe(200);
  });

  it('ends a stream whose browser stopped reading, freeing its slot', async () => {
    const f = await start({ maxStreams: 1, stalledStreamMs: 300 });
    // One panel larger than loopback's socket buffers: a reader who takes nothing blocks the stream.
    f.nodes.push({ id: 'bbbb0000bbbb0000', name: 'x'.repeat(32 * 2 ** 20), state: 'connected' });
    const socket = connect(Number(new URL(f.base).port), '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(`GET /dashboard/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    socket.pause();
    try {
      const deadline = Date.now() + 15_000;
      while (!f.lines.some((l) => l.includes('ORCH-NET-622'))) {
        if (Date.now() > deadline) throw new Error(`no ORCH-NET-622 line; got ${f.lines.join('\n')}`);
        await sleep(50);
      }
      expect(f.lines.find((l) => l.includes('ORCH-NET-622'))).toMatch(/WARN +ORCH-NET-622 dashboard stream ended: the browser stopped reading blockedMs=\d+ peer=ipv4:127\.0\.0\.1:/);
      f.nodes.pop();
      const next = await openEvents(f, '', bearer);
      expect(next.res.status).toBe(200);
      await next.close();
    } finally {
      socket.destroy();
    }
  });

  it('logs a request that failed under ORCH-NET-621', async () => {
    const f = await start();
    // A login form whose sender went away halfway: reading its body fails.
    const socket = connect(Number(new URL(f.base).port), '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write('POST /dashboard/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=abc');
    await sleep(100);
    socket.destroy();
    const deadline = Date.now() + 5_000;
    while (!f.lines.some((l) => l.includes('dashboard request failed'))) {
      if (Date.now() > deadline) throw new Error(`no failure line; got ${f.lines.join('\n')}`);
      await sleep(50);
    }
    expect(f.lines.find((l) => l.includes('dashboard request failed'))).toMatch(/WARN +ORCH-NET-621 dashboard request failed peer=ipv4:127\.0\.0\.1:\d+ path=\/dashboard\/login suppressed=0 cause="aborted"/);
  });
});
