import { createHash, X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { ControlClient } from './generated/conclave/v1/Control.js';
import type { NodeGatewayClient } from './generated/conclave/v1/NodeGateway.js';
import { loadConclaveProtos } from './load-protos.js';

export interface ClientOptions {
  /** Channel credentials; wins over `tls`. @default insecure, or TLS when `tls` is set */
  credentials?: grpc.ChannelCredentials;
  /** TLS to the orchestrator (see ClientTlsOptions). */
  tls?: ClientTlsOptions;
  /**
   * The Control API's operator token: sent as `authorization: Bearer <token>` on every call
   * (createControlClient only). Over an insecure channel it travels in the clear: use it on
   * loopback or with `tls`.
   */
  operatorToken?: string;
  channelOptions?: grpc.ChannelOptions;
}

export interface ClientTlsOptions {
  /** PEM roots that replace the system ones: a private CA, or a self-signed certificate itself. */
  ca?: Buffer;
  /**
   * `SHA256:…` (base64url) of the server certificate, DER, as a join string carries it. When set it
   * replaces the host-name check: the certificate must have this digest, whatever name it bears,
   * so a board may dial an IP address its certificate does not list. The chain is still checked
   * against `ca` (or the system roots).
   */
  pinSha256?: string;
  /** The name sent as SNI and checked against the certificate instead of the address's host. */
  serverName?: string;
}

/** `SHA256:` ‖ base64url(SHA-256(DER)) of an X.509 certificate (PEM or DER): what a join string pins. */
export function tlsCertificateFingerprint(certificate: string | Buffer): string {
  const der = new X509Certificate(certificate).raw;
  return `SHA256:${createHash('sha256').update(der).digest('base64url')}`;
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
    ...channelOptionsOf(options),
    ...(options.operatorToken !== undefined ? { interceptors: [bearerTokenInterceptor(options.operatorToken)] } : {}),
  });
}

export function createGatewayClient(address: string, options: ClientOptions = {}): NodeGatewayClient {
  const { NodeGateway } = loadConclaveProtos().conclave.v1;
  return new NodeGateway(address, channelCredentials(options), channelOptionsOf(options));
}

function channelOptionsOf(options: ClientOptions): grpc.ChannelOptions {
  const serverName = options.credentials ? undefined : options.tls?.serverName;
  return {
    ...DEFAULT_CHANNEL_OPTIONS,
    ...(serverName ? { 'grpc.ssl_target_name_override': serverName } : {}),
    ...options.channelOptions,
  };
}

function channelCredentials(options: ClientOptions): grpc.ChannelCredentials {
  if (options.credentials) return options.credentials;
  const tls = options.tls;
  if (!tls) return grpc.credentials.createInsecure();
  const pin = tls.pinSha256;
  if (pin === undefined) return grpc.credentials.createSsl(tls.ca ?? null);
  return grpc.credentials.createSsl(tls.ca ?? null, null, null, {
    // Called once the chain checked out; it replaces Node's host-name check.
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const actual = `SHA256:${createHash('sha256').update(cert.raw).digest('base64url')}`;
      return actual === pin ? undefined : new Error(`server certificate ${actual} is not the pinned ${pin}`);
    },
  });
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
