/**
 * The parts of a grpc-js server call that enforce its receive limit (grpc-js 1.14:
 * BaseServerInterceptingCall and its StreamDecoder). grpc-js has one limit per server; the
 * gateway needs a small one until a peer authenticates and the server's after.
 */
interface GrpcCallInternals {
  maxReceiveMessageSize?: unknown;
  decoder?: { maxReadMessageLength?: unknown };
  /** An interceptor's call wraps the next one, down to the base call. */
  nextCall?: GrpcCallInternals;
}

/**
 * Sets the largest message this call will read, from now on. The decoder checks it against
 * each message's length prefix, so a longer message fails the call (RESOURCE_EXHAUSTED)
 * before its body is buffered; the call's own copy covers decompressed sizes. Returns false
 * if this grpc-js does not have the fields (a test pins that it does).
 */
export function setCallReceiveLimit(call: object, maxBytes: number): boolean {
  let internals = (call as { call?: GrpcCallInternals }).call;
  while (internals && !internals.decoder && internals.nextCall) internals = internals.nextCall;
  const decoder = internals?.decoder;
  if (!internals || !decoder || typeof decoder.maxReadMessageLength !== 'number' || typeof internals.maxReceiveMessageSize !== 'number') {
    return false;
  }
  decoder.maxReadMessageLength = maxBytes;
  internals.maxReceiveMessageSize = maxBytes;
  return true;
}
