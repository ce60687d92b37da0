import { grpcStatusOf, type ConclaveError } from '@conclave/common/core';
import * as grpc from '@grpc/grpc-js';
import type { FrameStream, SessionFrame } from './secure-session.js';

type GrpcDuplex = grpc.ClientDuplexStream<object, SessionFrame> | grpc.ServerDuplexStream<SessionFrame, object>;

/** Trailer naming the catalog code of a session that ended in a failure. */
export const ERROR_CODE_TRAILER = 'conclave-error-code';

/**
 * The status a server ends a failed session's call with: the catalog status of the error, its
 * code first in the details (`ORCH-AUTH-530 sealed frame failed authentication`), as every
 * other Conclave gRPC error.
 */
export function sessionStatusOf(error: ConclaveError): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_TRAILER, error.code);
  return { code: grpcStatusOf(error.entry.status), details: `${error.code} ${error.message}`, metadata };
}

/**
 * NodeGateway.Session's gRPC stream as a FrameStream, on either side. A server stream
 * ends its call with `end()`, with OK or, after a failure, the error's status; only a
 * client stream can be cancelled, which is what `destroy` does there (a peer that lingers
 * after our half-close). A client has no status to send: it half-closes either way.
 */
export function grpcFrameStream(call: GrpcDuplex): FrameStream {
  const duplex = call as unknown as {
    write(frame: object): boolean;
    end(): void;
    emit(event: 'error', status: Partial<grpc.StatusObject>): boolean;
    on(event: string, listener: (...args: never[]) => void): void;
    off(event: string, listener: (...args: never[]) => void): void;
  };
  const server = !('cancel' in call);
  let ended = false;
  return {
    write: (frame) =>
      duplex.write('handshake' in frame ? { handshake: Buffer.from(frame.handshake) } : { sealed: Buffer.from(frame.sealed) }),
    end: (error?: ConclaveError) => {
      if (ended) return;
      ended = true;
      // grpc-js: an 'error' on a server stream sets the status its end() then sends, after the
      // frames already written (the CLOSE naming the failure goes out first).
      if (server && error) duplex.emit('error', sessionStatusOf(error));
      else duplex.end();
    },
    destroy: () => {
      if ('cancel' in call) call.cancel();
    },
    on: (event: string, listener: (...args: never[]) => void) => {
      // Our own status above arrives here as an 'error' too; the session has ended by then.
      duplex.on(event, listener);
      // A server call the client cancelled reports it as 'cancelled', not as 'end'.
      if (event === 'error' && server) {
        duplex.on('cancelled', () => (listener as (err: Error) => void)(new Error('stream cancelled')));
      }
    },
    off: (event, listener) => duplex.off(event, listener),
  } as FrameStream;
}
