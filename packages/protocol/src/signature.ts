import type { TensorSpec } from './generated/conclave/v1/TensorSpec.js';
import { DTYPE_BYTES, elementCount, isDType } from './tensor-codec.js';
import type { WireTensor } from './tensor-codec.js';

/** `x: float32[batch, 4], mask: int64[batch]`: the form error messages show. */
export function formatSignature(specs: readonly TensorSpec[]): string {
  return specs
    .map((spec) => {
      const dims = (spec.dims ?? []).map((d, i) => (Number(d) >= 0 ? String(d) : spec.dimNames?.[i] || '?'));
      return `${spec.name ?? ''}: ${spec.dtype ?? '?'}[${dims.join(', ')}]`;
    })
    .join(', ');
}

/**
 * Checks inputs against a model's declared inputs: every declared input present, no
 * extra ones, same dtype, same rank, equal fixed dimensions, and raw bytes that fill the
 * shape. Returns undefined when they match, or a message naming the problem and the
 * expected signature.
 */
export function checkInputs(specs: readonly TensorSpec[], inputs: Record<string, WireTensor>): string | undefined {
  const problems: string[] = [];
  const declared = new Set(specs.map((s) => s.name ?? ''));
  for (const name of Object.keys(inputs)) {
    if (!declared.has(name)) problems.push(`unexpected input "${name}"`);
  }
  for (const spec of specs) {
    const name = spec.name ?? '';
    const tensor = inputs[name];
    if (!tensor) {
      problems.push(`missing input "${name}"`);
      continue;
    }
    const problem = checkTensor(spec, tensor);
    if (problem) problems.push(`input "${name}" ${problem}`);
  }
  if (problems.length === 0) return undefined;
  return `${problems.join('; ')}; expected ${formatSignature(specs)}`;
}

function checkTensor(spec: TensorSpec, tensor: WireTensor): string | undefined {
  const dtype = tensor.dtype;
  if (dtype !== spec.dtype) return `has dtype ${dtype || '(none)'}, expected ${spec.dtype ?? '?'}`;
  if (!isDType(dtype)) return `has unsupported dtype ${dtype}`;
  const dims = tensor.dims.map(Number);
  const expected = (spec.dims ?? []).map(Number);
  if (dims.length !== expected.length) return `has rank ${dims.length} [${dims.join(', ')}], expected rank ${expected.length}`;
  for (let i = 0; i < dims.length; i++) {
    const want = expected[i] ?? -1;
    const got = dims[i] ?? -1;
    if (!Number.isSafeInteger(got) || got < 0) return `has invalid dimension ${got} at axis ${i}`;
    if (want >= 0 && got !== want) return `has shape [${dims.join(', ')}], axis ${i} must be ${want}`;
  }
  const bytes = tensor.raw.byteLength;
  const needed = elementCount(dims) * DTYPE_BYTES[dtype];
  if (bytes !== needed) return `carries ${bytes} bytes, shape [${dims.join(', ')}] of ${dtype} needs ${needed}`;
  return undefined;
}
