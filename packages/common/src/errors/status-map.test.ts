import { describe, expect, it } from 'vitest';
import { STATUS_MAP, grpcStatusOf, httpStatusOf, statusNameOfGrpc } from './status-map.js';

describe('status map', () => {
  it('maps the common statuses to gRPC and HTTP', () => {
    expect([grpcStatusOf('INVALID_ARGUMENT'), httpStatusOf('INVALID_ARGUMENT')]).toEqual([3, 400]);
    expect([grpcStatusOf('NOT_FOUND'), httpStatusOf('NOT_FOUND')]).toEqual([5, 404]);
    expect([grpcStatusOf('UNAUTHENTICATED'), httpStatusOf('UNAUTHENTICATED')]).toEqual([16, 401]);
    expect([grpcStatusOf('PERMISSION_DENIED'), httpStatusOf('PERMISSION_DENIED')]).toEqual([7, 403]);
    expect([grpcStatusOf('RESOURCE_EXHAUSTED'), httpStatusOf('RESOURCE_EXHAUSTED')]).toEqual([8, 429]);
    expect([grpcStatusOf('UNAVAILABLE'), httpStatusOf('UNAVAILABLE')]).toEqual([14, 503]);
    expect([grpcStatusOf('DEADLINE_EXCEEDED'), httpStatusOf('DEADLINE_EXCEEDED')]).toEqual([4, 504]);
  });

  it('gives each status a distinct gRPC code and reverses it', () => {
    const codes = Object.values(STATUS_MAP).map((s) => s.grpc);
    expect(new Set(codes).size).toBe(codes.length);
    for (const [name, { grpc }] of Object.entries(STATUS_MAP)) expect(statusNameOfGrpc(grpc)).toBe(name);
    expect(statusNameOfGrpc(0)).toBe('UNKNOWN');
  });
});
