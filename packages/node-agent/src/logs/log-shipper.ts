import { join } from 'node:path';
import { ConclaveError, type LogRecord } from '@conclave/common';
import type { LogAck__Output, LogBatch } from '@conclave/protocol';
import { LogSpool, type SpoolDrop } from './log-spool.js';
import { resolveLogShipperOptions, type LogShipperOptions, type ResolvedLogShipperOptions } from './log-shipper-options.js';
import { LOSS_LEDGER_FILE, LossLedger } from './loss-ledger.js';
import { SEQ_STATE_FILE, SeqReservation, resumePoint } from './seq-reservation.js';
import { toShippedRecord, type ShippedRecord } from './shipped-record.js';
import { GAP_ENCODED_MAX_BYTES, entryEncodedBytes, lastSeqOf, type ShippedGap, type SpoolEntry } from './spool-entry.js';
import { TokenBucket } from './token-bucket.js';

export type LogShipperState = 'running' | 'closing' | 'closed';

/** Why a record never reaches the orchestrator (the `reason` label of the dropped metric). */
export type LogDropReason = 'spool-full' | 'rate';

export interface LogShipperStats {
  /** Records the orchestrator acknowledged. */
  shippedTotal: number;
  droppedTotal: Readonly<Record<LogDropReason, number>>;
  spoolBytes: number;
}

/** What an encoded LogBatch has besides its records and gaps: two varint fields. */
const BATCH_FIELDS_MAX_BYTES = 32;

interface InFlight {
  readonly batch: { records: ShippedRecord[]; gaps: ShippedGap[]; spoolBytes: number; droppedTotal: number };
  /** The highest seq it carries: an acknowledgement at or above it completes the batch. */
  readonly lastSeq: number;
  /** Its gaps from the loss ledger, dropped from there once the batch is acknowledged. */
  readonly ledgerGaps: readonly ShippedGap[];
}

/**
 * Ships the node's log records to the orchestrator over the session. Records come from the
 * logger's tap, synchronously; each within the rate budget gets the next seq and waits in
 * memory until the next flush (every flushIntervalMs) writes them to the spool, from which
 * batches are read back and sent, one at a time: the next only once the orchestrator has
 * acknowledged the last, so log traffic never queues ahead of heartbeats and results. A batch
 * without an acknowledgement goes again after ackTimeoutMs and after a reconnect.
 *
 * Nothing is dropped silently: records over the rate budget, or with the memory buffer full
 * (the disk failing), are counted and said as one gap entry, which takes a seq of its own;
 * records dropped from a full spool are said as a gap over their seqs (the loss ledger).
 */
export class LogShipper {
  private stateValue: LogShipperState = 'running';
  private readonly bucket: TokenBucket;
  private pending: SpoolEntry[] = [];
  private pendingBytes = 0;
  /** Refused before they had a seq: said as one gap per reason once there is room again. */
  private readonly unsequenced: Record<LogDropReason, number> = { 'spool-full': 0, rate: 0 };
  private readonly dropped: Record<LogDropReason, number> = { 'spool-full': 0, rate: 0 };
  private shipped = 0;
  private linkUp = false;
  private inFlight: InFlight | undefined;
  private building = false;
  private flushing: Promise<void> | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private tickSoon = false;
  private ackTimer: NodeJS.Timeout | undefined;
  /** A spool write failed and was logged: the next failures are not, until one succeeds. */
  private writeFailing = false;
  private closing: Promise<void> | undefined;
  private readonly reader = (record: LogRecord): void => this.take(record);

  private constructor(
    private readonly o: ResolvedLogShipperOptions,
    private readonly spool: LogSpool,
    private readonly ledger: LossLedger,
    private readonly reservation: SeqReservation,
    private nextSeq: number,
    private ackedUpTo: number,
  ) {
    this.bucket = new TokenBucket(o.rateRecordsPerSecond, o.rateBurstRecords, o.nowMs);
  }

  /**
   * Opens the spool (what an earlier run left is sent first), goes on from the seqs it used,
   * and starts reading the tap: the records it kept since the logger was made come first.
   */
  static async open(options: LogShipperOptions): Promise<LogShipper> {
    const o = resolveLogShipperOptions(options);
    const spool = await LogSpool.open(o.dir, { maxBytes: o.spoolMaxBytes, ...(o.segmentMaxBytes !== undefined ? { segmentMaxBytes: o.segmentMaxBytes } : {}) });
    const ledger = await LossLedger.open(join(o.dir, LOSS_LEDGER_FILE));
    const reservation = await SeqReservation.open(join(o.dir, SEQ_STATE_FILE), o.seqReserveBlock);
    const { ackedUpTo } = reservation.state;
    const resume = resumePoint(spool.lastSeq, reservation.state);
    await spool.release(ackedUpTo);
    const shipper = new LogShipper(o, spool, ledger, reservation, resume.nextSeq, ackedUpTo);
    if (resume.skipped) shipper.queue({ gap: { ...resume.skipped, count: 0, reason: 'skipped' } });
    const { earlyDropped } = o.tap.attach(shipper.reader);
    // The tap dropped them after the records it kept: the gap goes after those.
    if (earlyDropped > 0) {
      shipper.dropped['spool-full'] += earlyDropped;
      shipper.queueGap(earlyDropped, 'spool-full');
    }
    return shipper;
  }

  get state(): LogShipperState {
    return this.stateValue;
  }

  stats(): LogShipperStats {
    return { shippedTotal: this.shipped, droppedTotal: { ...this.dropped }, spoolBytes: this.spool.bytes };
  }

  /** The session is registered: the batch in flight goes again, or the next one goes. */
  connected(): void {
    this.linkUp = true;
    if (this.inFlight) this.transmit();
    else void this.pump(false);
  }

  /** The session is lost: the batch in flight waits for the next one. */
  disconnected(): void {
    this.linkUp = false;
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
  }

  /** The orchestrator stored every seq through `upToSeq`: the batch in flight is done, the spool forgets. */
  ack(ack: LogAck__Output): void {
    const upTo = ack.upToSeq;
    const done = this.inFlight;
    if (done && upTo >= done.lastSeq) {
      clearTimeout(this.ackTimer);
      this.ackTimer = undefined;
      this.inFlight = undefined;
      this.shipped += done.batch.records.filter((r) => r.seq > this.ackedUpTo).length;
      void this.ledger.acked(done.ledgerGaps).catch((err: unknown) => this.writeFailed(err));
    }
    if (upTo > this.ackedUpTo) {
      this.ackedUpTo = upTo;
      void this.spool.release(upTo);
    }
    void this.pump(true);
  }

  /**
   * Stops reading the tap, writes what waits in memory (with the counts of refused records as
   * their gaps) to the spool and closes it: the next start sends it.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.setState('closing');
    this.o.tap.detach(this.reader);
    clearTimeout(this.tickTimer);
    clearTimeout(this.ackTimer);
    this.linkUp = false;
    this.sayUnsequenced(true);
    await this.flushing;
    await this.flush();
    await this.reservation.save(this.spool.lastSeq, this.ackedUpTo).catch((err: unknown) => this.writeFailed(err));
    await this.spool.close().catch((err: unknown) => this.writeFailed(err));
    this.setState('closed');
  }

  private setState(next: LogShipperState): void {
    if (this.stateValue === next || this.stateValue === 'closed') return;
    this.stateValue = next;
    this.o.logger.debug('STATE', 'log shipper state', { state: next });
  }

  /** The tap's reader: runs inside every logging call, so it only counts, converts and queues. */
  private take(record: LogRecord): void {
    if (this.stateValue !== 'running') return;
    if (!this.bucket.take()) return this.refuse('rate');
    if (this.pendingBytes >= this.o.memoryMaxBytes) return this.refuse('spool-full');
    this.sayUnsequenced(false);
    this.queue({ record: toShippedRecord(record, this.nextSeq++, this.o.nodeId) });
  }

  private refuse(reason: LogDropReason): void {
    this.unsequenced[reason] += 1;
    this.dropped[reason] += 1;
    this.scheduleTick();
  }

  /**
   * The refused records' gaps, one seq each. From a tick the rate gap waits for a token (the
   * budget allows again); riding on a record that got one, or at close, it goes at once.
   */
  private sayUnsequenced(fromTick: boolean): void {
    if (this.unsequenced.rate > 0 && (!fromTick || this.stateValue !== 'running' || this.bucket.take())) {
      this.queueGap(this.unsequenced.rate, 'rate');
      this.unsequenced.rate = 0;
    }
    if (this.unsequenced['spool-full'] > 0 && (this.pendingBytes < this.o.memoryMaxBytes || this.stateValue !== 'running')) {
      this.queueGap(this.unsequenced['spool-full'], 'spool-full');
      this.unsequenced['spool-full'] = 0;
    }
  }

  private queueGap(count: number, reason: LogDropReason): void {
    const seq = this.nextSeq++;
    this.queue({ gap: { fromSeq: seq, toSeq: seq, count, reason } });
  }

  private queue(entry: SpoolEntry): void {
    this.pending.push(entry);
    this.pendingBytes += entryEncodedBytes(entry);
    // A full batch waits no longer.
    this.scheduleTick(this.pendingBytes >= this.o.batchMaxBytes || this.pending.length >= this.o.batchMaxRecords);
  }

  private scheduleTick(soon = false, delayMs = this.o.flushIntervalMs): void {
    if (this.stateValue !== 'running') return;
    if (this.tickTimer && (this.tickSoon || !soon)) return;
    clearTimeout(this.tickTimer);
    this.tickSoon = soon;
    this.tickTimer = setTimeout(() => {
      this.tickTimer = undefined;
      void this.tick();
    }, soon ? 0 : delayMs);
    this.tickTimer.unref();
  }

  private async tick(): Promise<void> {
    this.sayUnsequenced(true);
    await this.flush();
    await this.pump(false);
    if (this.pending.length > 0) this.scheduleTick(false, this.writeFailing ? this.o.writeRetryMs : this.o.flushIntervalMs);
    else if (this.unsequenced.rate > 0 || this.unsequenced['spool-full'] > 0) this.scheduleTick();
  }

  private flush(): Promise<void> {
    this.flushing ??= this.flushPending().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Writes what waits in memory to the spool; what could not be written waits for the next try. */
  private async flushPending(): Promise<void> {
    if (this.pending.length === 0) return;
    const entries = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    let written = 0;
    let error: unknown;
    try {
      // No seq is on disk (or sent) before it is reserved on disk: a restart never reuses one.
      await this.reservation.reserveThrough(lastSeqOf(entries[entries.length - 1] as SpoolEntry), this.spool.lastSeq);
      const outcome = await this.spool.append(entries);
      written = outcome.written;
      error = outcome.error;
      // Every drop in the ledger before anything else runs: the next batch (read after this
      // append) must carry them all, or the orchestrator would take the later seqs as missing.
      const saved = outcome.drops.map((drop) => this.spoolFull(drop));
      await Promise.all(saved);
    } catch (err) {
      error = err;
    }
    if (written < entries.length) {
      const rest = entries.slice(written);
      this.pending = [...rest, ...this.pending];
      this.pendingBytes = this.pending.reduce((sum, entry) => sum + entryEncodedBytes(entry), 0);
    }
    if (error === undefined) this.writeFailing = false;
    else this.writeFailed(error);
  }

  /** Counts and logs a drop and takes it into the ledger at once; resolves when the ledger is on disk. */
  private spoolFull(drop: SpoolDrop): Promise<void> {
    this.dropped['spool-full'] += drop.records;
    this.o.logger.failure(
      new ConclaveError('NODE-STATE-720', {
        data: { fromSeq: drop.fromSeq, toSeq: drop.toSeq, count: drop.count, spoolMaxBytes: this.o.spoolMaxBytes },
      }),
      {},
      'warn',
    );
    return this.ledger.note(drop).catch((err: unknown) => this.writeFailed(err));
  }

  private writeFailed(err: unknown): void {
    if (this.writeFailing) return;
    this.writeFailing = true;
    this.o.logger.failure(new ConclaveError('NODE-STATE-721', { cause: err, data: { dir: this.o.dir } }), {}, 'warn');
  }

  /**
   * Reads the next batch from the spool and sends it, if the session is up and nothing is in
   * flight. `fullOnly` (right after an acknowledgement): only a full batch goes now, a smaller
   * one at the next tick, so that batches stay few.
   */
  private async pump(fullOnly: boolean): Promise<void> {
    if (!this.linkUp || this.inFlight || this.building || this.stateValue !== 'running') return;
    if (fullOnly && !this.ledger.hasUnsent) {
      const unread = this.spool.unread();
      if (unread.entries < this.o.batchMaxRecords && unread.bytes < this.o.batchMaxBytes) {
        if (unread.entries > 0) this.scheduleTick();
        return;
      }
    }
    this.building = true;
    try {
      const room = this.o.batchMaxBytes - BATCH_FIELDS_MAX_BYTES - GAP_ENCODED_MAX_BYTES * (this.ledger.gaps().length + 1);
      const entries = await this.spool.read(this.o.batchMaxRecords, room);
      const ledgerGaps = this.ledger.takeUnsent();
      if (entries.length === 0 && ledgerGaps.length === 0) return;
      const records: ShippedRecord[] = [];
      const gaps: ShippedGap[] = [...ledgerGaps];
      let lastSeq = 0;
      for (const entry of entries) {
        if ('record' in entry) records.push(entry.record);
        else gaps.push(entry.gap);
        lastSeq = Math.max(lastSeq, lastSeqOf(entry));
      }
      for (const gap of ledgerGaps) lastSeq = Math.max(lastSeq, gap.toSeq);
      this.inFlight = { batch: { records, gaps, spoolBytes: 0, droppedTotal: 0 }, lastSeq, ledgerGaps };
      this.transmit();
    } catch (err) {
      this.writeFailed(err);
      this.scheduleTick(false, this.o.writeRetryMs);
    } finally {
      this.building = false;
    }
  }

  private transmit(): void {
    const flight = this.inFlight;
    if (!flight || !this.linkUp) return;
    flight.batch.spoolBytes = this.spool.bytes;
    flight.batch.droppedTotal = this.dropped['spool-full'] + this.dropped.rate;
    // Offline after all (the session just ended): connected() sends it.
    if (!this.o.link.send(flight.batch satisfies LogBatch)) return;
    clearTimeout(this.ackTimer);
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined;
      if (this.inFlight === flight) this.transmit();
    }, this.o.ackTimeoutMs);
    this.ackTimer.unref();
  }
}
