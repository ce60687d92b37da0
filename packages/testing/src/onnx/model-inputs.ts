import type { HostTensor } from './host-tensor.js';

/** The named input, or a clear error naming what the reference was given. */
export function requireInput(inputs: Readonly<Record<string, HostTensor>>, name: string): HostTensor {
  const t = inputs[name];
  if (!t) throw new Error(`expected(): missing input '${name}' (have ${Object.keys(inputs).join(', ') || 'none'})`);
  return t;
}

/** `t.data` as float32, or a clear error. */
export function float32Data(t: HostTensor, name: string): Float32Array {
  if (t.dtype !== 'float32' || !(t.data instanceof Float32Array)) {
    throw new Error(`expected(): input '${name}' must be float32, got ${t.dtype}`);
  }
  return t.data;
}
