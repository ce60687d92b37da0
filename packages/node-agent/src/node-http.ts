import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import { listenOrFail } from '@conclave/common';

/** The agent's local `/healthz` (session state) and `/metrics`, for the board's own monitoring. */
export async function startNodeHttp(options: {
  port: number;
  host: string;
  metrics: Registry;
  health: () => { status: string; connected: boolean };
}): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(options.health()));
    } else if (path === '/metrics') {
      options.metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': options.metrics.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
    }
  });
  const port = await listenOrFail(server, { port: options.port, host: options.host, errorCode: 'NODE-NET-604', listener: 'local HTTP' });
  return { server, port };
}
