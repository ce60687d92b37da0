import type * as grpc from '@grpc/grpc-js';
import type { FrameStream, SessionFrame } from './secure-session.js';

type GrpcDuplex = grpc.ClientDuplexStream<object, SessionFrame> | grpc.ServerDuplexStream<SessionFrame, object>;

/**
 * NodeGateway.Session's gRPC stream as a FrameStream, on either side. A server stream
 * ends its call with `end()`; only a client stream can be cancelled, which is what
 * `destroy` does there (a peer that lingers after our half-close).
 */
export function grpcFrameStream(call: GrpcDuplex): FrameStream {
  const duplex = call as unknown as {
    write(frame: object): boolean;
    end(): void;
    on(event: string, listener: (...args: never[]) => void): void;
    off(event: string, listener: (...args: never[]) => void): void;
  };
  return {
    write: (frame) =>
      duplex.write('handshake' in frame ? { handshake: Buffer.from(frame.handshake) } : { sealed: Buffer.from(frame.sealed) }),
    end: () => duplex.end(),
    destroy: () => {
      if ('cancel' in call) call.cancel();
    },
    on: (event: string, listener: (...args: never[]) => void) => {
      duplex.on(event, listener);
      // A server call the client cancelled reports it as 'cancelled', not as 'end'.
      if (event === 'error' && !('cancel' in call)) {
        duplex.on('cancelled', () => (listener as (err: Error) => void)(new Error('stream cancelled')));
      }
    },
    off: (event, listener) => duplex.off(event, listener),
  } as FrameStream;
}
