import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as ControlProto } from './generated/control.js';
import type { ProtoGrpcType as GatewayProto } from './generated/gateway.js';

/**
 * Loader options. They must match the flags given to proto-loader-gen-types in
 * scripts/gen-protos.mjs, or the generated types would lie about the runtime shapes.
 */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  bytes: Buffer,
};

export const PROTO_FILES = [
  'conclave/v1/tensor.proto',
  'conclave/v1/jobs.proto',
  'conclave/v1/gateway.proto',
  'conclave/v1/control.proto',
  'conclave/v1/hailo.proto',
];

/** The /proto directory: beside the repo's packages in a checkout, or CONCLAVE_PROTO_DIR in an image. */
export function protoDir(): string {
  const candidates = [
    new URL('../../../proto', import.meta.url),
    new URL('../proto', import.meta.url),
  ].map((url) => fileURLToPath(url));
  const found = candidates.find((dir) => existsSync(`${dir}/conclave/v1/gateway.proto`));
  if (!found) throw new Error(`conclave protos not found (looked in ${candidates.join(', ')})`);
  return found;
}

export type ConclaveProtos = ControlProto & GatewayProto;

let cached: ConclaveProtos | undefined;

/** Loads the Conclave protos once per process. */
export function loadConclaveProtos(): ConclaveProtos {
  if (!cached) {
    const definition = protoLoader.loadSync(PROTO_FILES, { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir()] });
    cached = grpc.loadPackageDefinition(definition) as unknown as ConclaveProtos;
  }
  return cached;
}
