import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import { listenOrFail, type Logger } from '@conclave/common';
import { createDashboard, type DashboardOptions } from './dashboard/dashboard.js';
import type { LogReader } from './logs/log-entry.js';

export interface HttpServerOptions {
  host: string;
  port: number;
  metrics: Registry;
  /** Resolves to the list of failed readiness checks; empty means ready. */
  readiness: () => Promise<string[]>;
  logger: Logger;
  /** The fleet dashboard under `/dashboard`, behind the operator token; absent: no dashboard. */
  dashboard?: Omit<DashboardOptions, 'logger'>;
  /** The fleet log store, for the dashboard's live tail; absent: the tail says logs are not stored. */
  logs?: LogReader;
}

/** How long a closing server lets requests under way finish. */
const CLOSE_GRACE_MS = 500;

export interface HttpServerHandle {
  server: Server;
  port: number;
  /** Ends the dashboard's live streams, then closes the server. */
  close(): Promise<void>;
}

/** `/healthz` (the process is up), `/readyz` (Redis reachable and gRPC serving), `/metrics`, `/dashboard`. */
export async function startHttpServer(o: HttpServerOptions): Promise<HttpServerHandle> {
  const dashboard = o.dashboard
    ? createDashboard({ ...o.dashboard, logger: o.logger, sources: { ...o.dashboard.sources, ...(o.logs ? { logs: o.logs } : {}) } })
    : undefined;
  const server = createServer((req, res) => {
    if (dashboard?.handle(req, res)) return;
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type }).end(body);
    };
    if (req.method !== 'GET') return reply(405, JSON.stringify({ error: 'method not allowed' }));
    if (path === '/healthz') return reply(200, JSON.stringify({ status: 'ok' }));
    if (path === '/readyz') {
      o.readiness().then(
        (failed) => reply(failed.length ? 503 : 200, JSON.stringify({ status: failed.length ? 'not ready' : 'ready', failed })),
        (err: unknown) => reply(503, JSON.stringify({ status: 'not ready', failed: [String(err)] })),
      );
      return;
    }
    if (path === '/metrics') {
      o.metrics.metrics().then(
        (text) => reply(200, text, o.metrics.contentType),
        (err: unknown) => {
          o.logger.warn('HEALTH', 'metrics collection failed', { err });
          reply(500, JSON.stringify({ error: 'metrics unavailable' }));
        },
      );
      return;
    }
    reply(404, JSON.stringify({ error: 'not found', paths: ['/healthz', '/readyz', '/metrics', ...(dashboard ? ['/dashboard'] : [])] }));
  });
  const port = await listenOrFail(server, { port: o.port, host: o.host, errorCode: 'ORCH-NET-605', listener: 'HTTP' });
  return {
    server,
    port,
    close: () => {
      // Open event streams would keep server.close waiting for ever.
      dashboard?.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // server.close ends idle keep-alive connections, not those that never sent a request (a
      // browser's preconnect): after a grace for answers under way, everything is cut.
      setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS).unref();
      return closed;
    },
  };
}
