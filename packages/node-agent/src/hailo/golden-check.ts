import {
  DTYPE_BYTES, elementCount, isDType, typedArrayFromTensor, type DType, type TensorSpec, type WireTensor,
} from '@conclave/protocol';

/** The golden check's bound: |hailo - cpu| <= absolute + relative * |cpu| for every element. */
export interface Tolerance {
  readonly absolute: number;
  readonly relative: number;
}

/** What the comparison found: the worst element, for the refusal's reason and the logs. */
export interface GoldenVerdict {
  readonly pass: boolean;
  /** The largest |hailo - cpu| over all outputs. */
  readonly maxError: number;
  /** Where it is, as `output[index]`. */
  readonly worst: string;
  /** A problem that is not a number: an output missing or of another size. */
  readonly problem?: string;
}

/** A symbolic dimension takes this size in the golden input: one frame. */
const GOLDEN_FRAMES = 1;

/**
 * A deterministic input that fits `specs`: the same model gets the same bytes on every node
 * and every start, so a drift between two checks is the chip's, not the input's. Floats lie in
 * [0, 1), as normalised images do; integers span a small range that every integer type holds.
 */
export function goldenInputs(specs: readonly TensorSpec[], seed = 0x9e3779b9): Record<string, WireTensor> {
  let state = seed >>> 0;
  // mulberry32: a tiny seeded generator, plenty for test data.
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const inputs: Record<string, WireTensor> = {};
  for (const spec of specs) {
    const dtype = spec.dtype ?? 'float32';
    if (!isDType(dtype)) throw new Error(`golden input: unsupported dtype ${dtype} of ${spec.name ?? ''}`);
    const dims = (spec.dims ?? []).map((d) => (Number(d) > 0 ? Number(d) : GOLDEN_FRAMES));
    const count = elementCount(dims);
    const raw = Buffer.alloc(count * DTYPE_BYTES[dtype]);
    for (let i = 0; i < count; i++) writeElement(raw, dtype, i, next());
    inputs[spec.name ?? ''] = { dtype, dims, raw };
  }
  return inputs;
}

function writeElement(raw: Buffer, dtype: DType, i: number, unit: number): void {
  const small = Math.floor(unit * 100);
  switch (dtype) {
    case 'float32': raw.writeFloatLE(unit, i * 4); return;
    case 'float64': raw.writeDoubleLE(unit, i * 8); return;
    case 'uint8': raw.writeUInt8(Math.floor(unit * 256), i); return;
    case 'int8': raw.writeInt8(small, i); return;
    case 'bool': raw.writeUInt8(unit < 0.5 ? 0 : 1, i); return;
    case 'int16': raw.writeInt16LE(small, i * 2); return;
    case 'uint16': raw.writeUInt16LE(small, i * 2); return;
    case 'int32': raw.writeInt32LE(small, i * 4); return;
    case 'uint32': raw.writeUInt32LE(small, i * 4); return;
    case 'int64': raw.writeBigInt64LE(BigInt(small), i * 8); return;
    case 'uint64': raw.writeBigUInt64LE(BigInt(small), i * 8); return;
    // float16: zero bits are 0.0, which is a value every model takes.
    case 'float16': return;
  }
}

/** Compares the Hailo path's outputs with the CPU reference's, element by element. */
export function compareOutputs(
  hailo: Record<string, WireTensor>, reference: Record<string, WireTensor>, tolerance: Tolerance,
): GoldenVerdict {
  let maxError = 0;
  let worst = '';
  let pass = true;
  for (const [name, expected] of Object.entries(reference)) {
    const got = hailo[name];
    if (!got) return { pass: false, maxError: Infinity, worst: name, problem: `output "${name}" is missing` };
    const want = numbers(expected);
    const have = numbers(got);
    if (want.length !== have.length) {
      return { pass: false, maxError: Infinity, worst: name, problem: `output "${name}" has ${have.length} elements, the CPU reference ${want.length}` };
    }
    for (let i = 0; i < want.length; i++) {
      const error = Math.abs(have[i]! - want[i]!);
      // NaN on either side is a failure, not a pass by comparison with NaN.
      const within = error <= tolerance.absolute + tolerance.relative * Math.abs(want[i]!);
      if (!within || Number.isNaN(error)) pass = false;
      if (error > maxError || Number.isNaN(error)) {
        maxError = Number.isNaN(error) ? Infinity : error;
        worst = `${name}[${i}]`;
      }
    }
  }
  return { pass, maxError, worst };
}

function numbers(tensor: WireTensor): ArrayLike<number> {
  const data = typedArrayFromTensor(tensor);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Array.from(data, Number);
  return data;
}

/** The reason a failed verdict gives, e.g. `max error 0.41 at y[2] > 0.05 + 0.01·|cpu|`. */
export function describeVerdict(verdict: GoldenVerdict, tolerance: Tolerance): string {
  if (verdict.problem) return verdict.problem;
  return `max error ${verdict.maxError.toPrecision(3)} at ${verdict.worst} > ${tolerance.absolute} + ${tolerance.relative}·|cpu|`;
}
