import type { HostTensor, ModelTensorSpec } from './host-tensor.js';

/**
 * A model built in memory, with its signature and a JS reference of what it computes.
 * `expected` is exact for the inputs `sampleInputs` makes (and, for the element-wise
 * models, for any input), so tests compare outputs bit for bit.
 */
export interface TinyModel {
  /** A short name, used for file names. */
  readonly name: string;
  /** The serialised `ModelProto`. */
  readonly bytes: Uint8Array;
  readonly inputs: readonly ModelTensorSpec[];
  readonly outputs: readonly ModelTensorSpec[];
  /** What the model computes, in JS. */
  expected(inputs: Readonly<Record<string, HostTensor>>): Record<string, HostTensor>;
  /** Deterministic inputs that fit the signature; a symbolic dimension takes `size` (default 2). */
  sampleInputs(size?: number): Record<string, HostTensor>;
}
