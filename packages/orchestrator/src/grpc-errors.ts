import * as grpc from '@grpc/grpc-js';
import { grpcStatusOf, isConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';

/**
 * The one place where domain errors become gRPC statuses. The details start with the
 * catalog code, so clients (and the CLI) can show it: `ORCH-REQ-202 unknown model: …`.
 * Unexpected errors are logged here and reach the client as INTERNAL without internals.
 */
export function toServiceError(err: unknown, logger: Logger): Partial<grpc.StatusObject> {
  if (isConclaveError(err)) {
    const metadata = new grpc.Metadata();
    metadata.set('conclave-error-code', err.code);
    return { code: grpcStatusOf(err.entry.status), details: `${err.code} ${err.message}`, metadata };
  }
  logger.error('REQ', 'unexpected error in request', { err });
  return { code: grpc.status.INTERNAL, details: 'internal error (see orchestrator log)' };
}

/** Wraps a unary handler so that every rejection is answered with a coded status. */
export function unary<Req, Res>(
  logger: Logger,
  handler: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    handler(call.request, call).then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServiceError(err, logger)),
    );
  };
}

