import type { StatusName } from './error-entry.js';

export interface StatusCodes {
  /** Numeric gRPC status code. */
  readonly grpc: number;
  /** HTTP status for the same condition. */
  readonly http: number;
}

/**
 * The one table from catalog status to gRPC and HTTP codes, used at the edges.
 * HTTP codes follow google.rpc.Code's documented mapping.
 */
export const STATUS_MAP: Readonly<Record<StatusName, StatusCodes>> = {
  CANCELLED: { grpc: 1, http: 499 },
  UNKNOWN: { grpc: 2, http: 500 },
  INVALID_ARGUMENT: { grpc: 3, http: 400 },
  DEADLINE_EXCEEDED: { grpc: 4, http: 504 },
  NOT_FOUND: { grpc: 5, http: 404 },
  ALREADY_EXISTS: { grpc: 6, http: 409 },
  PERMISSION_DENIED: { grpc: 7, http: 403 },
  RESOURCE_EXHAUSTED: { grpc: 8, http: 429 },
  FAILED_PRECONDITION: { grpc: 9, http: 400 },
  ABORTED: { grpc: 10, http: 409 },
  OUT_OF_RANGE: { grpc: 11, http: 400 },
  UNIMPLEMENTED: { grpc: 12, http: 501 },
  INTERNAL: { grpc: 13, http: 500 },
  UNAVAILABLE: { grpc: 14, http: 503 },
  DATA_LOSS: { grpc: 15, http: 500 },
  UNAUTHENTICATED: { grpc: 16, http: 401 },
};

export function grpcStatusOf(status: StatusName): number {
  return STATUS_MAP[status].grpc;
}

export function httpStatusOf(status: StatusName): number {
  return STATUS_MAP[status].http;
}

/** The status name for a numeric gRPC code (UNKNOWN for anything unmapped, including OK). */
export function statusNameOfGrpc(code: number): StatusName {
  for (const [name, codes] of Object.entries(STATUS_MAP)) {
    if (codes.grpc === code) return name as StatusName;
  }
  return 'UNKNOWN';
}
