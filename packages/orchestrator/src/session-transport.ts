import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import type { ConclaveError } from '@conclave/common';
import { encodeOrchestratorMessage, failureOf } from '@conclave/protocol';
import type { NodeFrame__Output, OrchestratorFrame, OrchestratorMessage, SealedChannel } from '@conclave/protocol';

export type SessionStream = grpc.ServerDuplexStream<NodeFrame__Output, OrchestratorFrame>;

export interface SessionTransportEvents {
  drain: [];
}

/**
 * How a NodeSession talks to its node once the handshake is done: every message is encoded,
 * sealed under the session's send key and written as a `sealed` frame. Ending the transport
 * sends a sealed CLOSE that names the failure, when there is one, so that the node can trust
 * the reason (a revoked node stops retrying; a lost session is retried).
 */
export class SealedTransport extends EventEmitter<SessionTransportEvents> {
  private ended = false;

  constructor(
    private readonly stream: SessionStream,
    private readonly channel: SealedChannel,
  ) {
    super();
    stream.on('drain', () => this.emit('drain'));
  }

  get peer(): string {
    return this.stream.getPeer();
  }

  /** Returns false when the stream's buffer is full: wait for `drain` before sending more. */
  send(message: OrchestratorMessage): boolean {
    if (this.ended || this.channel.state !== 'open') return true;
    return this.stream.write({ sealed: Buffer.from(this.channel.seal(encodeOrchestratorMessage(message))) });
  }

  end(reason?: ConclaveError): void {
    if (this.ended) return;
    this.ended = true;
    try {
      const failure = reason ? failureOf(reason) : undefined;
      const close = this.channel.state === 'open' ? this.channel.close(failure, failure ? reason?.message : '') : undefined;
      if (close) this.stream.write({ sealed: Buffer.from(close) });
      this.stream.end();
    } catch {
      // The stream may already be gone; there is no one left to tell.
    }
  }
}
