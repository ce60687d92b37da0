import * as http2 from 'node:http2';
import * as net from 'node:net';

/**
 * A bare-bones gRPC client for NodeGateway.Session over `node:http2`, for attack tests: it binds
 * its TCP socket to a chosen local address (the gateway rate-limits handshakes per source IP),
 * and it writes protobuf NodeFrames by hand, so it can send exactly what an attacker would.
 */

export const SESSION_PATH = '/conclave.v1.NodeGateway/Session';

/** NodeFrame / OrchestratorFrame oneof fields (proto/conclave/v1/gateway.proto). */
export const FRAME_FIELD = { handshake: 1, sealed: 2, message: 10 } as const;

/** A protobuf length-delimited field (wire type 2) holding `bytes`. */
export function encodeBytesField(field: number, bytes: Uint8Array): Uint8Array {
  const header = [...varint((field << 3) | 2), ...varint(bytes.length)];
  const out = new Uint8Array(header.length + bytes.length);
  out.set(header, 0);
  out.set(bytes, header.length);
  return out;
}

/** gRPC framing: u8 compressed = 0 ‖ u32 big-endian length ‖ message. */
export function grpcMessage(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt8(0, 0);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** One field of a decoded frame: which oneof member, and its bytes. */
export interface RawFrame {
  field: number;
  bytes: Uint8Array;
}

/** Decodes an OrchestratorFrame whose member is a bytes field (handshake or sealed). */
export function decodeFrame(message: Uint8Array): RawFrame {
  let offset = 0;
  const read = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = message[offset++];
      if (byte === undefined) throw new Error('truncated varint');
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
      shift += 7;
    }
  };
  const tag = read();
  if ((tag & 7) !== 2) throw new Error(`unexpected wire type ${tag & 7}`);
  const length = read();
  return { field: tag >>> 3, bytes: message.subarray(offset, offset + length) };
}

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

export interface RawSessionResult {
  /** Frames the orchestrator sent, in order. */
  frames: RawFrame[];
  /** `grpc-status` from the trailers (or the headers of a trailers-only answer). */
  grpcStatus: number | undefined;
  /** The orchestrator ended the stream (as opposed to the client giving up at the timeout). */
  endedByServer: boolean;
  /** Transport error, if any. */
  error?: string;
}

export interface RawSessionOptions {
  /**
   * Called with every frame received; return true to end the client's side there (an attacker
   * that got its answer). @default never: wait for the server to end the stream
   */
  stopOn?: (frame: RawFrame) => boolean;
  /** Give up (cancel the stream) after this long. @default 5000 */
  timeoutMs?: number;
}

/** One HTTP/2 connection to the gateway from `localAddress`, carrying any number of Session streams. */
export class RawGatewayConnection {
  private constructor(private readonly http: http2.ClientHttp2Session) {}

  static connect(address: string, localAddress?: string): Promise<RawGatewayConnection> {
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon);
    const port = Number(address.slice(colon + 1));
    return new Promise((resolve, reject) => {
      const session = http2.connect(`http://${address}`, {
        createConnection: () => net.connect({ host, port, ...(localAddress ? { localAddress } : {}) }),
      });
      session.once('connect', () => {
        session.off('error', reject);
        // Errors after connect surface on the streams.
        session.on('error', () => undefined);
        resolve(new RawGatewayConnection(session));
      });
      session.once('error', reject);
    });
  }

  /** The local address the TCP socket is bound to (what the orchestrator sees). */
  get localAddress(): string | undefined {
    return this.http.socket?.localAddress;
  }

  /** Opens a Session stream, writes `frames` (each an encoded NodeFrame) and collects the answer. */
  session(frames: readonly Uint8Array[], options: RawSessionOptions = {}): Promise<RawSessionResult> {
    const { stopOn, timeoutMs = 5_000 } = options;
    return new Promise((resolve) => {
      const result: RawSessionResult = { frames: [], grpcStatus: undefined, endedByServer: false };
      let settled = false;
      const stream = this.http.request({
        ':method': 'POST', ':path': SESSION_PATH, 'content-type': 'application/grpc', te: 'trailers',
      });
      const done = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      const timer = setTimeout(() => {
        // Cancel: a stream the server left open.
        stream.close(http2.constants.NGHTTP2_CANCEL);
        done();
      }, timeoutMs);
      const status = (headers: http2.IncomingHttpHeaders) => {
        const value = headers['grpc-status'];
        if (value !== undefined) result.grpcStatus = Number(value);
      };
      stream.on('response', status);
      stream.on('trailers', status);
      let pending = Buffer.alloc(0);
      let stopped = false;
      stream.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 5) {
          const length = pending.readUInt32BE(1);
          if (pending.length < 5 + length) break;
          const frame = decodeFrame(new Uint8Array(pending.subarray(5, 5 + length)));
          pending = pending.subarray(5 + length);
          result.frames.push(frame);
          if (!stopped && stopOn?.(frame)) {
            stopped = true;
            // Half-close: the server ends its side, and no RST_STREAM is sent.
            stream.end();
          }
        }
      });
      stream.on('end', () => {
        result.endedByServer = true;
        // Close our side too, so the stream closes without a reset.
        if (!stream.writableEnded) stream.end();
      });
      stream.on('error', (err: Error) => {
        result.error = err.message;
        done();
      });
      stream.on('close', done);
      for (const frame of frames) stream.write(grpcMessage(frame));
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.http.closed || this.http.destroyed) return resolve();
      this.http.close(() => resolve());
      setTimeout(() => {
        this.http.destroy();
        resolve();
      }, 2_000).unref();
    });
  }
}
