import * as grpc from '@grpc/grpc-js';
import type { ControlClient } from './generated/conclave/v1/Control.js';
import type { NodeGatewayClient } from './generated/conclave/v1/NodeGateway.js';
import { loadConclaveProtos } from './load-protos.js';

export interface ClientOptions {
  /** Defaults to an insecure channel (loopback until secure sessions land). */
  credentials?: grpc.ChannelCredentials;
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
  return new Control(address, options.credentials ?? grpc.credentials.createInsecure(), {
    ...DEFAULT_CHANNEL_OPTIONS,
    ...options.channelOptions,
  });
}

export function createGatewayClient(address: string, options: ClientOptions = {}): NodeGatewayClient {
  const { NodeGateway } = loadConclaveProtos().conclave.v1;
  return new NodeGateway(address, options.credentials ?? grpc.credentials.createInsecure(), {
    ...DEFAULT_CHANNEL_OPTIONS,
    ...options.channelOptions,
  });
}
