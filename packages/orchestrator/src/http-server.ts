import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import { listenOrFail, type Logger } from '@conclave/common';

export interface HttpServerOptions {
  host: string;
  port: number;
  metrics: Registry;
  /** Resolves to the list of failed readiness checks; empty means ready. */
  readiness: () => Promise<string[]>;
  logger: Logger;
}

/** `/healthz` (the process is up), `/readyz` (Redis reachable and gRPC serving), `/metrics`. */
export async function startHttpServer(o: HttpServerOptions): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
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
    reply(404, JSON.stringify({ error: 'not found', paths: ['/healthz', '/readyz', '/metrics'] }));
  });
  const port = await listenOrFail(server, { port: o.port, host: o.host, errorCode: 'ORCH-NET-605', listener: 'HTTP' });
  return { server, port };
}
