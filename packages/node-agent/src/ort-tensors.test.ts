import { describe, expect, it } from 'vitest';
import { tensorFromTypedArray } from '@conclave/protocol';
import { dataOfTransfer, toTransfer, transferFromData, transferListOf, wireFromTransfer } from './ort-tensors.js';

describe('ort-tensors', () => {
  it('copies a misaligned wire slice once into a buffer of its own, aligned for the dtype', () => {
    const pool = Buffer.alloc(64);
    const values = new Float32Array([1.5, -2.25, 3]);
    const raw = pool.subarray(3, 3 + values.byteLength);
    raw.set(new Uint8Array(values.buffer));
    const transfer = toTransfer({ dtype: 'float32', dims: [3], raw });
    expect(transfer.buffer.byteLength).toBe(12);
    expect(Array.from(dataOfTransfer(transfer) as Float32Array)).toEqual([1.5, -2.25, 3]);
    // The caller's bytes are untouched and still usable.
    expect(raw.byteLength).toBe(12);
    expect(transfer.buffer).not.toBe(pool.buffer);
  });

  it('passes an output that spans its whole buffer without a copy', () => {
    const data = new BigInt64Array([2n ** 60n, -5n]);
    const transfer = transferFromData('int64', [2], data);
    expect(transfer.buffer).toBe(data.buffer);
    const wire = wireFromTransfer(transfer);
    expect(wire.raw.buffer).toBe(data.buffer);
    expect(wire).toMatchObject({ dtype: 'int64', dims: [2] });
  });

  it('copies an output that is a view into a larger buffer', () => {
    const backing = new Int32Array([9, 1, 2, 9]);
    const view = backing.subarray(1, 3);
    const transfer = transferFromData('int32', [2], view);
    expect(transfer.buffer).not.toBe(backing.buffer);
    expect(Array.from(dataOfTransfer(transfer) as Int32Array)).toEqual([1, 2]);
  });

  it('round-trips every dtype through the wire form', () => {
    const wire = tensorFromTypedArray('bool', [2, 2], new Uint8Array([1, 0, 0, 1]));
    const back = wireFromTransfer(toTransfer(wire));
    expect(back.raw.equals(wire.raw)).toBe(true);
    expect(back.dims).toEqual([2, 2]);
  });

  it('lists each buffer once for postMessage', () => {
    const t = toTransfer(tensorFromTypedArray('uint8', [1], new Uint8Array([7])));
    expect(transferListOf({ a: t, b: t })).toEqual([t.buffer]);
  });

  it('refuses a dtype onnxruntime cannot take', () => {
    expect(() => toTransfer({ dtype: 'string', dims: [0], raw: Buffer.alloc(0) })).toThrow(/dtype "string"/);
  });
});
