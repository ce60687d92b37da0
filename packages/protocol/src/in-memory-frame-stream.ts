import { EventEmitter } from 'node:events';
import type { ConclaveError } from '@conclave/common/core';
import type { FrameStream, SessionFrame } from './secure-session.js';

/**
 * Two connected FrameStreams, as the two ends of one NodeGateway.Session, for tests
 * of either end without gRPC. Frames arrive asynchronously and in order, as on a socket.
 */
export function inMemoryFrameStreams(): [FrameStream, FrameStream] {
  const a = new InMemoryEnd();
  const b = new InMemoryEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class InMemoryEnd extends EventEmitter implements FrameStream {
  peer: InMemoryEnd | undefined;
  /** Frames this end wrote, for tests that look at the wire. */
  readonly written: SessionFrame[] = [];
  /** The error this end was ended with (a gRPC server's non-OK status), for tests. */
  endReason: ConclaveError | undefined;
  private ended = false;

  write(frame: { handshake: Uint8Array } | { sealed: Uint8Array }): boolean {
    if (this.ended) throw new Error('write after end');
    const wire: SessionFrame = 'handshake' in frame ? { frame: 'handshake', handshake: frame.handshake } : { frame: 'sealed', sealed: frame.sealed };
    this.written.push(wire);
    const peer = this.peer;
    setImmediate(() => peer?.emit('data', wire));
    return true;
  }

  end(error?: ConclaveError): void {
    if (this.ended) return;
    this.ended = true;
    this.endReason = error;
    const peer = this.peer;
    setImmediate(() => peer?.emit('end'));
  }

  destroy(): void {
    this.end();
  }
}
