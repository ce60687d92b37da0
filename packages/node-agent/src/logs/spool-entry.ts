import type { LogGap__Output } from '@conclave/protocol';
import { encodedBytesOf, type ShippedRecord } from './shipped-record.js';

/** Why seqs carry no record (logs.proto LogGap.reason). */
export type GapReason = 'spool-full' | 'rate' | 'skipped';

export type ShippedGap = LogGap__Output & { reason: GapReason };

/**
 * One line of a spool segment: a record, or a gap that takes seqs of its own in the stream (a
 * rate gap takes one seq, a restart's skipped block all of its). Gaps for records dropped from a
 * full spool refer to older seqs and are kept apart (loss-ledger.ts).
 */
export type SpoolEntry = { record: ShippedRecord } | { gap: ShippedGap };

/** What protobuf needs for a LogGap in a batch, at most: four tags, three varints, the reason. */
export const GAP_ENCODED_MAX_BYTES = 48;

export function firstSeqOf(entry: SpoolEntry): number {
  return 'record' in entry ? entry.record.seq : entry.gap.fromSeq;
}

export function lastSeqOf(entry: SpoolEntry): number {
  return 'record' in entry ? entry.record.seq : entry.gap.toSeq;
}

/** Records this entry stands for that the orchestrator will not get: 0 for a record. */
export function lostCountOf(entry: SpoolEntry): number {
  return 'record' in entry ? 0 : entry.gap.count;
}

/** An upper bound of the entry's size in an encoded LogBatch. */
export function entryEncodedBytes(entry: SpoolEntry): number {
  return 'record' in entry ? encodedBytesOf(entry.record) : GAP_ENCODED_MAX_BYTES;
}

/** The segment line: `{"r":{…}}` for a record, `{"g":{…}}` for a gap, then a newline. */
export function encodeSpoolLine(entry: SpoolEntry): string {
  return `${JSON.stringify('record' in entry ? { r: entry.record } : { g: entry.gap })}\n`;
}

/** The entry of one line (without its newline); undefined for a line that is not one (torn by a crash). */
export function decodeSpoolLine(line: string): SpoolEntry | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!parsed || typeof parsed !== 'object') return undefined;
  const { r, g } = parsed as { r?: unknown; g?: unknown };
  if (isRecord(r)) return { record: r };
  if (isGap(g)) return { gap: g };
  return undefined;
}

function isRecord(x: unknown): x is ShippedRecord {
  if (!x || typeof x !== 'object') return false;
  const r = x as Record<string, unknown>;
  return (
    Number.isSafeInteger(r.seq) && typeof r.timeMs === 'number' && typeof r.level === 'string' && typeof r.prefix === 'string' &&
    typeof r.section === 'string' && typeof r.code === 'string' && typeof r.message === 'string' && typeof r.fieldsJson === 'string'
  );
}

function isGap(x: unknown): x is ShippedGap {
  if (!x || typeof x !== 'object') return false;
  const g = x as Record<string, unknown>;
  return (
    Number.isSafeInteger(g.fromSeq) && Number.isSafeInteger(g.toSeq) && Number.isSafeInteger(g.count) &&
    (g.reason === 'spool-full' || g.reason === 'rate' || g.reason === 'skipped')
  );
}
