import { describe, expect, it } from 'vitest';
import type { LogRecord } from '@conclave/common';
import { SHIPPED_FIELDS_MAX_BYTES, SHIPPED_MESSAGE_MAX_BYTES, cutUtf8, toShippedRecord } from './shipped-record.js';

const record = (over: Partial<LogRecord> = {}): LogRecord => ({
  time: new Date(1_700_000_000_123),
  level: 'info',
  prefix: 'NODE',
  section: 'JOB',
  message: 'job completed',
  meta: { node: 'n-1', jobId: 'j-1', attempt: 2 },
  ...over,
});

describe('toShippedRecord', () => {
  it('carries the record, without the node binding the session already says', () => {
    expect(toShippedRecord(record({ code: 'NODE-JOB-802' }), 7, 'n-1')).toEqual({
      seq: 7, timeMs: 1_700_000_000_123, level: 'info', prefix: 'NODE', section: 'JOB', code: 'NODE-JOB-802',
      message: 'job completed', fieldsJson: '{"jobId":"j-1","attempt":2}',
    });
    // A `node` that is not this node's id is data of the record, kept.
    expect(JSON.parse(toShippedRecord(record(), 1, 'n-2').fieldsJson)).toEqual({ node: 'n-1', jobId: 'j-1', attempt: 2 });
    expect(toShippedRecord(record(), 1, 'n-1').code).toBe('');
  });

  it('cuts a long message on a whole character and says so in the fields', () => {
    // Three bytes each: 2 KiB is not a multiple, so a cut in the middle of one is what a naive slice would do.
    const long = '€'.repeat(1_000);
    const shipped = toShippedRecord(record({ message: long }), 1, 'n-1');
    expect(Buffer.byteLength(shipped.message)).toBeLessThanOrEqual(SHIPPED_MESSAGE_MAX_BYTES);
    expect(Buffer.byteLength(shipped.message)).toBeGreaterThan(SHIPPED_MESSAGE_MAX_BYTES - 3);
    expect(shipped.message).toBe('€'.repeat(682));
    expect(JSON.parse(shipped.fieldsJson)).toEqual({ jobId: 'j-1', attempt: 2, messageTruncated: true, messageBytes: 3_000 });
  });

  it('leaves big fields out of fields_json, keeping the small ones and naming the others', () => {
    const shipped = toShippedRecord(record({ meta: { node: 'n-1', jobId: 'j-1', output: 'x'.repeat(20_000), attempt: 1 } }), 1, 'n-1');
    expect(Buffer.byteLength(shipped.fieldsJson)).toBeLessThanOrEqual(SHIPPED_FIELDS_MAX_BYTES);
    expect(JSON.parse(shipped.fieldsJson)).toEqual({ jobId: 'j-1', attempt: 1, truncated: true, fieldsBytes: 20_039, omitted: ['output'] });
  });

  it('falls back to the markers alone when even the kept fields would not fit', () => {
    const meta: Record<string, unknown> = {};
    for (let i = 0; i < 400; i++) meta[`"${i}"`.repeat(4)] = 1;
    const shipped = toShippedRecord(record({ meta }), 1, 'n-1');
    expect(Buffer.byteLength(shipped.fieldsJson)).toBeLessThanOrEqual(SHIPPED_FIELDS_MAX_BYTES);
    expect(JSON.parse(shipped.fieldsJson)).toMatchObject({ truncated: true });
  });

  it('cutUtf8 never splits a character', () => {
    expect(cutUtf8('aé', 2)).toBe('a');
    expect(cutUtf8('a😀', 4)).toBe('a');
    expect(cutUtf8('a😀', 5)).toBe('a😀');
  });
});
