import * as grpc from '@grpc/grpc-js';
import type { ControlClient } from './generated/conclave/v1/Control.js';
import type { NodeGatewayClient } from './generated/conclave/v1/NodeGateway.js';
import { loadConclaveProtos } from './load-protos.js';

export interface ClientOptions {
  /** Channel credentials; wins over `tls`. @default insecure, or TLS when `tls` is set */
  credentials?: grpc.ChannelCredentials;
  /** TLS to the orchestrator; `ca` (PEM) replaces the system roots, e.g. for a self-signed certificate. */
  tls?: { ca?: Buffer };
  /**
   * The Control API's operator token: sent as `authorization: Bearer <token>` on every call
   * (createControlClient only). Over an insecure channel it travels in the clear: use it on
   * loopback or with `tls`.
   */
  operatorToken?: string;
  channelOptions?: grpc.ChannelOptions;
}

/** Messages up to 64 MiB: model uploads are chunked, but job tensors can be large. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export const DEFAULT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  // Boards sit behind NAT: keepalives keep the mapping open and find dead links.
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
};

export function createControlClient(address: string, options: ClientOptions = {}): ControlClient {
  const { Control } = loadConclaveProtos().conclave.v1;
  return new Control(address, channelCredentials(options), {
    ...DEFAULT_CHANNEL_OPTIONS,
    ...options.channelOptions,
    ...(options.operatorToken !== undefined ? { interceptors: [bearerTokenInterceptor(options.operatorToken)] } : {}),
  });
}

export function createGatewayClient(address: string, options: ClientOptions = {}): NodeGatewayClient {
  const { NodeGateway } = loadConclaveProtos().conclave.v1;
  return new NodeGateway(address, channelCredentials(options), {
    ...DEFAULT_CHANNEL_OPTIONS,
    ...options.channelOptions,
  });
}

function channelCredentials(options: ClientOptions): grpc.ChannelCredentials {
  if (options.credentials) return options.credentials;
  if (options.tls) return grpc.credentials.createSsl(options.tls.ca ?? null);
  return grpc.credentials.createInsecure();
}

/** Puts `authorization: Bearer <token>` on every call of the client it is given to. */
export function bearerTokenInterceptor(token: string): grpc.Interceptor {
  return (callOptions, nextCall) =>
    new grpc.InterceptingCall(nextCall(callOptions), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}
