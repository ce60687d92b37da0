import type { LogRecord } from '@conclave/common';
import type { ShippedLogRecord__Output } from '@conclave/protocol';

/** A shipped record as the spool and the shipper keep it: plain numbers, every field set. */
export type ShippedRecord = ShippedLogRecord__Output;

/** UTF-8 bytes of a shipped message: a log line's message is a sentence, not a payload. */
export const SHIPPED_MESSAGE_MAX_BYTES = 2 * 1024;
/** UTF-8 bytes of a shipped record's fields_json; past it the big fields are left out. */
export const SHIPPED_FIELDS_MAX_BYTES = 8 * 1024;
/** A code is a catalog code (`NODE-STATE-708`); a longer string in `code` is cut here. */
const SHIPPED_CODE_MAX_BYTES = 64;
/**
 * Room kept for the markers of a cut fields object (`truncated`, `fieldsBytes`, `omitted`) when
 * choosing the fields that stay: up to OMITTED_KEYS_MAX names of OMITTED_KEY_MAX_BYTES each.
 */
const TRUNCATION_MARKERS_BYTES = 2_560;
const OMITTED_KEYS_MAX = 32;
const OMITTED_KEY_MAX_BYTES = 64;
/**
 * What protobuf adds to a record's strings, at most: eight tags, two 10-byte varints (seq and
 * time), six length prefixes and the record's own tag and length within the batch.
 */
const RECORD_FRAMING_MAX_BYTES = 64;

/**
 * The record as it goes to the orchestrator. `node` is left out of the fields when it is this
 * node's id (the binding every agent line carries): the session already names the node. The
 * message is cut at SHIPPED_MESSAGE_MAX_BYTES (`messageTruncated`, `messageBytes` say so) and
 * the fields at SHIPPED_FIELDS_MAX_BYTES (`truncated`, `fieldsBytes`, `omitted`). The record
 * was redacted by the logger that made it.
 */
export function toShippedRecord(record: LogRecord, seq: number, nodeId: string): ShippedRecord {
  const { node, ...rest } = record.meta;
  const fields: Record<string, unknown> = node === nodeId ? rest : record.meta;
  const messageBytes = Buffer.byteLength(record.message);
  const cut = messageBytes > SHIPPED_MESSAGE_MAX_BYTES;
  return {
    seq,
    timeMs: record.time.getTime(),
    level: record.level,
    prefix: record.prefix,
    section: record.section,
    code: record.code === undefined ? '' : cutUtf8(record.code, SHIPPED_CODE_MAX_BYTES),
    message: cut ? cutUtf8(record.message, SHIPPED_MESSAGE_MAX_BYTES) : record.message,
    fieldsJson: fieldsJsonOf(cut ? { ...fields, messageTruncated: true, messageBytes } : fields),
  };
}

/** An upper bound of the record's size in an encoded LogBatch: the batch limit is checked with it. */
export function encodedBytesOf(record: ShippedRecord): number {
  return (
    RECORD_FRAMING_MAX_BYTES +
    Buffer.byteLength(record.level) +
    Buffer.byteLength(record.prefix) +
    Buffer.byteLength(record.section) +
    Buffer.byteLength(record.code) +
    Buffer.byteLength(record.message) +
    Buffer.byteLength(record.fieldsJson)
  );
}

/** The longest prefix of `text` of at most `maxBytes` UTF-8 bytes that ends on a whole character. */
export function cutUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes;
  // A continuation byte (10xxxxxx) at the cut means the character before it is incomplete.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}

function jsonOf(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    // Redacted meta is plain data; this is only a guard against a toJSON that throws.
    return undefined;
  }
}

/**
 * The fields as one JSON object of at most SHIPPED_FIELDS_MAX_BYTES. Too big: the small fields
 * stay, in their order (ids such as `jobId` are what the orchestrator indexes by), the others
 * are named in `omitted`.
 */
function fieldsJsonOf(fields: Record<string, unknown>): string {
  const whole = jsonOf(fields);
  if (whole !== undefined && Buffer.byteLength(whole) <= SHIPPED_FIELDS_MAX_BYTES) return whole;
  const fieldsBytes = whole === undefined ? 0 : Buffer.byteLength(whole);
  const kept: Record<string, unknown> = {};
  const omitted: string[] = [];
  let size = TRUNCATION_MARKERS_BYTES;
  for (const [key, value] of Object.entries(fields)) {
    const part = jsonOf(value);
    const partBytes = part === undefined ? Infinity : Buffer.byteLength(part) + Buffer.byteLength(key) + 4;
    if (size + partBytes <= SHIPPED_FIELDS_MAX_BYTES) {
      kept[key] = value;
      size += partBytes;
    } else if (omitted.length < OMITTED_KEYS_MAX) {
      omitted.push(cutUtf8(key, OMITTED_KEY_MAX_BYTES));
    }
  }
  const summary = jsonOf({ ...kept, truncated: true, fieldsBytes, omitted });
  if (summary !== undefined && Buffer.byteLength(summary) <= SHIPPED_FIELDS_MAX_BYTES) return summary;
  // Keys that escape to far more than their length: the markers alone.
  return JSON.stringify({ truncated: true, fieldsBytes });
}
