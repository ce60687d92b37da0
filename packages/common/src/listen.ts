import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { ConclaveError } from './errors/conclave-error.js';
import type { ErrorCode } from './errors/catalog/index.js';

/** What a failed bind means, by errno, in the words an operator needs. */
const BIND_REASONS: Record<string, string> = {
  EADDRINUSE: 'another process is listening there',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'that address is not one of this host',
};

export interface ListenOptions {
  port: number;
  host: string;
  /** The executable's "port unavailable" code, whose recovery names the flag (ORCH-NET-605, NODE-NET-604…). */
  errorCode: ErrorCode;
  /** Which listener, for the message: 'HTTP', 'local HTTP'. */
  listener: string;
}

/**
 * Binds `server` and resolves with the port it got (useful with port 0). A bind failure
 * becomes `errorCode` naming the listener, the address and why, instead of a bare EADDRINUSE.
 */
export function listenOrFail(server: Server, options: ListenOptions): Promise<number> {
  const { port, host } = options;
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const reason = (err.code !== undefined ? BIND_REASONS[err.code] : undefined) ?? err.message;
      reject(
        new ConclaveError(options.errorCode, {
          detail: `${options.listener} ${host}:${port}: ${reason} (${err.code ?? 'error'})`,
          data: { listener: options.listener, host, port, errno: err.code },
          cause: err,
        }),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Fails with `errorCode` now if the port is taken, by binding it for a moment: a start-up can
 * check its ports before it starts anything (an embedded Redis) that it would have to stop again.
 * The real bind can still lose a race; it reports the same code. Port 0 is always free.
 */
export async function assertPortFree(options: ListenOptions): Promise<void> {
  if (options.port === 0) return;
  const probe = createServer();
  await listenOrFail(probe, options);
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}
