import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConclaveError, httpStatusOf, isConclaveError } from '@conclave/common';
import type { LogMeta, Logger } from '@conclave/common';
import type { LogFilter } from '../logs/log-entry.js';
import { bearerTokenOf, isLoopbackPeer, operatorTokenMatches, type OperatorAuthFailure } from '../operator-auth.js';
import { DashboardAssets } from './dashboard-assets.js';
import { DashboardFeed, type FleetSnapshot } from './dashboard-feed.js';
import { JOBS_PER_LIST, logsFragment, panelErrorOf } from './fragments.js';
import { DashboardSessions, SESSION_COOKIE, cookieValue } from './dashboard-session.js';
import type { DashboardSources } from './dashboard-sources.js';
import { html, type SafeHtml } from './html.js';
import { logFilterOf, logTailParamsAsGiven, logTailSearchParams, parseLogTailQuery, type LogTailQuery } from './log-tail-query.js';
import { LogTail } from './log-tail.js';
import { DASHBOARD_PATH, EVENTS_PATH, LOGIN_PATH, LOGOUT_PATH, dashboardPage, loginPage, messagePage } from './pages.js';
import { PeerLogLimiter } from './peer-log-limiter.js';
import { SseStream } from './sse-stream.js';

export interface DashboardOptions {
  /** The Control API's bearer token: the password of the login form. */
  operatorToken: string;
  sources: DashboardSources;
  logger: Logger;
  /**
   * The HTTP port has no TLS, so without this a request is served only from a loopback peer:
   * a TLS proxy on this host, or the end of a tunnel (SSH, `kubectl port-forward`). Else the
   * token and the cookie would cross the network in the clear, which the Control API refuses
   * too (ORCH-AUTH-573). The Host header is not asked: any client can send `Host: localhost`.
   * `--insecure-control`.
   * @default false
   */
  allowRemotePlaintext?: boolean;
  /** Open live streams at most (one per open tab); more are refused (ORCH-NET-620, 429). @default 16 */
  maxStreams?: number;
  /**
   * How long a stream's socket may stay unable to take more before the stream is ended
   * (ORCH-NET-622), freeing its slot. @default 30_000
   */
  stalledStreamMs?: number;
  /**
   * A refused request (ORCH-AUTH-572, ORCH-AUTH-573, ORCH-NET-620) or a failed one (ORCH-NET-621)
   * is logged at most once per peer address this often, the line counting those held back
   * (`suppressed`): strangers can send them as fast as they like. @default 60_000
   */
  refusalLogIntervalMs?: number;
  /** How often the panels are read again and changes pushed. @default 1_000 */
  updateIntervalMs?: number;
  /** How long a login lasts. @default 43_200_000 (12 h) */
  sessionTtlMs?: number;
  /** How long one source may take before its panel shows it unavailable. @default 5_000 */
  sourceTimeoutMs?: number;
  /** Newest messages shown per chat room. @default 5 */
  messagesPerRoom?: number;
}

interface ResolvedDashboardOptions extends Required<Omit<DashboardOptions, 'sources' | 'logger' | 'operatorToken'>> {
  sources: DashboardSources;
  logger: Logger;
  operatorToken: string;
}

/** Peer addresses whose refusals are counted; past that the one logged longest ago is forgotten. */
const MAX_LOGGED_PEERS = 1_000;

/** The largest login form read: a token is at most a few hundred bytes. */
export const MAX_LOGIN_BODY_BYTES = 4_096;

/**
 * The strictest policy the pages work with: scripts and styles only from this origin (htmx and
 * its SSE extension as files, no inline code, no eval), forms and streams only to it, no framing.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "connect-src 'self'",
  "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
].join('; ');

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // Not no-referrer: with it a browser sends `Origin: null` on the login form's POST.
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** Every page carries fleet data or a login form: none may be kept by a browser or a proxy. */
const NO_STORE: Readonly<Record<string, string>> = { 'cache-control': 'no-store' };

type Auth = { ok: true } | { ok: false; failure?: OperatorAuthFailure };

export interface Dashboard {
  /** Serves `/dashboard` and below; false for any other path (left to the caller). */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Ends every live stream (an HTTP server's close waits for open responses). */
  close(): void;
}

/**
 * The fleet dashboard on the orchestrator's HTTP port: server-rendered panels that htmx's SSE
 * extension replaces as the stream sends them, behind the operator token (a login form setting
 * a session cookie, or `Authorization: Bearer`).
 */
export function createDashboard(options: DashboardOptions): Dashboard {
  const o: ResolvedDashboardOptions = {
    allowRemotePlaintext: false, maxStreams: 16, stalledStreamMs: 30_000, refusalLogIntervalMs: 60_000,
    updateIntervalMs: 1_000, sessionTtlMs: 12 * 3_600_000, sourceTimeoutMs: 5_000, messagesPerRoom: 5, ...options,
  };
  const log = o.logger;
  // Apart, so that a flood of refusals does not hide the failures of a caller let in.
  const refusalLines = new PeerLogLimiter({ intervalMs: o.refusalLogIntervalMs, maxPeers: MAX_LOGGED_PEERS });
  const failureLines = new PeerLogLimiter({ intervalMs: o.refusalLogIntervalMs, maxPeers: MAX_LOGGED_PEERS });
  const sessions = new DashboardSessions(o.operatorToken, o.sessionTtlMs);
  const assets = new DashboardAssets();
  const feed = new DashboardFeed({
    sources: o.sources, updateIntervalMs: o.updateIntervalMs, sourceTimeoutMs: o.sourceTimeoutMs,
    jobsPerList: JOBS_PER_LIST, messagesPerRoom: o.messagesPerRoom,
  });
  const streams = new Set<SseStream>();
  let closed = false;

  const send = (res: ServerResponse, status: number, body: SafeHtml | string, headers: Record<string, string> = {}) => {
    const text = typeof body === 'string' ? body : body.text;
    res.writeHead(status, {
      ...SECURITY_HEADERS, ...NO_STORE, 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'text/html; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)), ...headers,
    }).end(text);
  };

  const peerOf = (req: IncomingMessage) => {
    const address = req.socket.remoteAddress ?? '';
    return address.includes(':') ? `ipv6:[${address}]:${req.socket.remotePort ?? 0}` : `ipv4:${address}:${req.socket.remotePort ?? 0}`;
  };

  /** Logs `err` for this peer unless a line for its address was logged within the interval. */
  const logLimited = (lines: PeerLogLimiter, req: IncomingMessage, err: ConclaveError, meta: LogMeta) => {
    const admitted = lines.admit(req.socket.remoteAddress ?? '');
    if (admitted) log.failure(err, { peer: peerOf(req), ...meta, suppressed: admitted.suppressed }, 'warn');
  };

  const authenticate = (req: IncomingMessage): Auth => {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const presented = bearerTokenOf(header);
      if (presented === undefined) return { ok: false, failure: 'missing' };
      return operatorTokenMatches(presented, o.operatorToken) ? { ok: true } : { ok: false, failure: 'mismatch' };
    }
    // An expired cookie, or one from before a restart, is no attack: it just asks for a login.
    return sessions.valid(cookieValue(req.headers.cookie, SESSION_COOKIE)) ? { ok: true } : { ok: false };
  };

  const refused = (req: IncomingMessage, res: ServerResponse, failure: OperatorAuthFailure, path: string, page: SafeHtml | string) => {
    const err = new ConclaveError('ORCH-AUTH-572', { data: { reason: failure } });
    logLimited(refusalLines, req, err, { path, reason: failure });
    send(res, httpStatusOf(err.entry.status), page);
  };

  const sessionCookie = (value: string, maxAgeSeconds: number) =>
    // No Secure flag: the port speaks plain HTTP (loopback, or a TLS proxy in front), and a
    // browser would not send a Secure cookie back over it.
    `${SESSION_COOKIE}=${value}; Path=${DASHBOARD_PATH}; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}`;

  /**
   * A POST from another site's page (SameSite=Strict already keeps the cookie off it), by what
   * the browser says: Sec-Fetch-Site, else Origin. curl sends neither and is let through.
   */
  const crossOrigin = (req: IncomingMessage) => {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined) return site !== 'same-origin' && site !== 'none';
    const origin = req.headers.origin;
    if (origin === undefined) return false;
    const host = req.headers.host ?? '';
    return origin !== `http://${host}` && origin !== `https://${host}`;
  };

  async function login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (crossOrigin(req)) return send(res, 403, messagePage('Refused', 'That login came from another site.'));
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') return send(res, 415, loginPage('Send the form as application/x-www-form-urlencoded.'));
    const body = await readBody(req, MAX_LOGIN_BODY_BYTES);
    if (body === undefined) {
      res.setHeader('connection', 'close');
      return send(res, 413, loginPage('That form was too large.'));
    }
    const token = new URLSearchParams(body).get('token')?.trim() ?? '';
    if (token === '') return refused(req, res, 'missing', LOGIN_PATH, loginPage('Enter the operator token.'));
    if (!operatorTokenMatches(token, o.operatorToken)) return refused(req, res, 'mismatch', LOGIN_PATH, loginPage('That is not the operator token.'));
    log.info('AUTH', 'dashboard login', { peer: peerOf(req) });
    send(res, 303, '', { location: DASHBOARD_PATH, 'set-cookie': sessionCookie(sessions.issue(), Math.floor(o.sessionTtlMs / 1_000)) });
  }

  async function page(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const auth = authenticate(req);
    if (!auth.ok) {
      if (auth.failure) return refused(req, res, auth.failure, DASHBOARD_PATH, loginPage('That is not the operator token.'));
      return send(res, 200, loginPage());
    }
    const snapshot = await feed.current();
    const tail = tailFilterOf(url, snapshot);
    if ('error' in tail) {
      const status = isConclaveError(tail.error) ? httpStatusOf(tail.error.entry.status) : 503;
      const logs = logsFragment([], { kind: 'refused', error: panelErrorOf(tail.error) });
      // The stream gets the same parameters, so that it shows the same refusal.
      return send(res, status, dashboardPage({ ...snapshot.panels, logs }, tail.query ?? { prefixes: [] }, logTailParamsAsGiven(url.searchParams)));
    }
    const logs = o.sources.logs ? html`<p class="empty">Connecting to the live tail…</p>` : logsFragment([], { kind: 'not-stored' });
    send(res, 200, dashboardPage({ ...snapshot.panels, logs }, tail.query, logTailSearchParams(tail.query)));
  }

  async function events(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const auth = authenticate(req);
    if (!auth.ok) {
      if (auth.failure) return refused(req, res, auth.failure, EVENTS_PATH, 'operator token missing or wrong');
      return send(res, 401, 'log in at /dashboard first');
    }
    if (streams.size >= o.maxStreams) {
      const err = new ConclaveError('ORCH-NET-620', { detail: `${o.maxStreams} open`, data: { maxStreams: o.maxStreams } });
      logLimited(refusalLines, req, err, {});
      return send(res, httpStatusOf(err.entry.status), 'too many dashboard streams; close other tabs', { 'retry-after': '5' });
    }
    const stream = new SseStream(res, {
      headers: { ...SECURITY_HEADERS, ...NO_STORE },
      stallTimeoutMs: o.stalledStreamMs,
      onStalled: (blockedMs) => {
        log.failure(new ConclaveError('ORCH-NET-622', { data: { blockedMs } }), { peer: peerOf(req) }, 'warn');
      },
    });
    streams.add(stream);
    // Subscribed before the first snapshot is read, so that no change falls between the two.
    const unsubscribe = feed.subscribe((changed) => {
      for (const [panel, fragment] of Object.entries(changed)) stream.send(panel, fragment.text);
    });
    const tail: { current?: LogTail } = {};
    res.on('close', () => {
      streams.delete(stream);
      unsubscribe();
      tail.current?.close();
    });
    const snapshot = await feed.current();
    if (stream.isClosed) return;
    for (const [panel, fragment] of Object.entries(snapshot.panels)) stream.send(panel, fragment.text);
    // Made once the nodes are known: a node given by name is followed by its id.
    const filter = tailFilterOf(url, snapshot);
    if ('error' in filter) return stream.send('logs', logsFragment([], { kind: 'refused', error: panelErrorOf(filter.error) }).text);
    tail.current = new LogTail({ reader: o.sources.logs, filter: filter.filter, onRender: (panel) => stream.send('logs', panel.text) });
    tail.current.start();
  }

  async function asset(res: ServerResponse, path: string): Promise<void> {
    const file = await assets.get(path);
    res.writeHead(200, {
      ...SECURITY_HEADERS, 'content-type': file.type, 'content-length': String(file.body.length),
      // Public code and style, no fleet data: a browser may keep them a few minutes.
      'cache-control': 'private, max-age=300',
    }).end(file.body);
  }

  async function route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (!o.allowRemotePlaintext && !isLoopbackPeer(peerOf(req))) {
      const err = new ConclaveError('ORCH-AUTH-573', { data: { reason: 'plaintext-remote' } });
      logLimited(refusalLines, req, err, { host: req.headers.host, path });
      return send(res, httpStatusOf(err.entry.status), messagePage('Refused', 'Plain HTTP from another machine: open the dashboard through an SSH tunnel or port-forward (http://127.0.0.1:7401/dashboard), or a TLS proxy on the orchestrator\'s host.'));
    }
    const only = (allowed: string) => {
      if (method === allowed) return true;
      send(res, 405, messagePage('Method not allowed', `${path} takes ${allowed}.`), { allow: allowed });
      return false;
    };
    if (closed) return send(res, 503, messagePage('Stopping', 'The orchestrator is stopping.'));
    if (path === DASHBOARD_PATH || path === `${DASHBOARD_PATH}/`) return only('GET') ? page(req, res, url) : undefined;
    if (path === EVENTS_PATH) return only('GET') ? events(req, res, url) : undefined;
    if (path === LOGIN_PATH) {
      if (method === 'GET') return send(res, 303, '', { location: DASHBOARD_PATH });
      return only('POST') ? login(req, res) : undefined;
    }
    if (path === LOGOUT_PATH) {
      if (!only('POST')) return;
      if (crossOrigin(req)) return send(res, 403, messagePage('Refused', 'That request came from another site.'));
      return send(res, 303, '', { location: DASHBOARD_PATH, 'set-cookie': sessionCookie('', 0) });
    }
    if (assets.has(path)) return only('GET') ? asset(res, path) : undefined;
    send(res, 404, messagePage('Not found', `Nothing at ${path}.`));
  }

  return {
    handle(req, res) {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://dashboard.invalid');
      } catch {
        return false;
      }
      if (url.pathname !== DASHBOARD_PATH && !url.pathname.startsWith(`${DASHBOARD_PATH}/`)) return false;
      route(req, res, url).catch((cause: unknown) => {
        const err = new ConclaveError('ORCH-NET-621', { cause });
        logLimited(failureLines, req, err, { path: url.pathname });
        if (!res.headersSent) send(res, 500, messagePage('Error', 'The dashboard could not answer; the orchestrator log says why.'));
        else res.destroy();
      });
      return true;
    },
    close() {
      closed = true;
      feed.close();
      for (const stream of streams) stream.end();
      streams.clear();
    },
  };
}

/**
 * The tail's query and store filter for a page's URL, or why there is none: a refused value
 * (ORCH-REQ-261), a node that is neither an id nor a name the registry knows (ORCH-REQ-260),
 * or a node that cannot be resolved because the registry did not answer.
 */
function tailFilterOf(
  url: URL, snapshot: FleetSnapshot,
): { query: LogTailQuery; filter: LogFilter } | { query: LogTailQuery | undefined; error: unknown } {
  const parsed = parseLogTailQuery(url.searchParams);
  if ('error' in parsed) return { query: undefined, error: parsed.error };
  const { query } = parsed;
  if (query.node !== undefined && snapshot.nodesError !== undefined) return { query, error: snapshot.nodesError };
  try {
    return { query, filter: logFilterOf(query, snapshot.nodes) };
  } catch (err) {
    return { query, error: err };
  }
}

/**
 * The body as text, or undefined once it passes `maxBytes`: reading stops there, and the
 * caller answers 413 with `connection: close` (destroying the request would lose the answer).
 */
function readBody(req: IncomingMessage, maxBytes: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > maxBytes) return resolve(undefined);
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData).off('end', onEnd).off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) return void chunks.push(chunk);
      done();
      req.pause();
      resolve(undefined);
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    req.on('data', onData).on('end', onEnd).on('error', onError);
  });
}
