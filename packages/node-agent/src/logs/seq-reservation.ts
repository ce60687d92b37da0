import { readFile } from 'node:fs/promises';
import { writeFileDurable } from '@conclave/common';

/** The reservation's file in the spool directory. */
export const SEQ_STATE_FILE = 'seq.json';
/** Seqs reserved by one durable write: one fsync per this many records. */
export const SEQ_RESERVE_BLOCK = 10_000;

export interface SeqState {
  /** No seq above it was ever written or sent. */
  reserved: number;
  /** Every seq at or below it was used (a lower bound: written when reserving and at close). */
  lastUsed: number;
  /** The orchestrator had every seq through it (at close; 0 after a crash). */
  ackedUpTo: number;
}

/**
 * The node's log seqs survive restarts and are never reused: a block of seqs is reserved on
 * disk before any of them is written to the spool, so that a restart that finds no spool (a
 * crash before the first write, the directory emptied) starts above every seq ever sent.
 */
export class SeqReservation {
  private current: SeqState;
  private saving: Promise<void> = Promise.resolve();

  private constructor(private readonly path: string, private readonly block: number, state: SeqState) {
    this.current = state;
  }

  static async open(path: string, block = SEQ_RESERVE_BLOCK): Promise<SeqReservation> {
    return new SeqReservation(path, block, await readState(path));
  }

  get state(): Readonly<SeqState> {
    return this.current;
  }

  /** Resolves once seqs through `seq` are reserved on disk: at once, or after one write per block. */
  async reserveThrough(seq: number, lastUsed: number): Promise<void> {
    if (seq <= this.current.reserved) return;
    // Whole blocks (10,000, 20,000…): the mark says at a glance how far the seqs went.
    const reserved = Math.ceil(seq / this.block) * this.block;
    await this.write({ ...this.current, reserved, lastUsed: Math.max(this.current.lastUsed, lastUsed) });
  }

  /** At close: where the seqs and the acknowledgements stand. */
  async save(lastUsed: number, ackedUpTo: number): Promise<void> {
    await this.write({ reserved: Math.max(this.current.reserved, lastUsed), lastUsed, ackedUpTo });
  }

  private write(next: SeqState): Promise<void> {
    const write = this.saving.then(async () => {
      await writeFileDurable(this.path, JSON.stringify(next));
      this.current = next;
    });
    this.saving = write.catch(() => undefined);
    return write;
  }
}

/** Where a restarted shipper's seqs go on, and the never-used seqs it says it skipped. */
export interface ResumePoint {
  nextSeq: number;
  skipped?: { fromSeq: number; toSeq: number };
}

/**
 * After the last seq in the spool when it has one (no seq above it was sent: entries are sent
 * only once on disk); otherwise above the reserved block, the seqs between the last one known
 * used and that block's end said to be skipped, so that the orchestrator does not wait for them.
 */
export function resumePoint(spoolLastSeq: number, state: SeqState): ResumePoint {
  if (spoolLastSeq > 0 && spoolLastSeq >= state.lastUsed) return { nextSeq: spoolLastSeq + 1 };
  const used = Math.max(spoolLastSeq, state.lastUsed);
  if (state.reserved > used) return { nextSeq: state.reserved + 1, skipped: { fromSeq: used + 1, toSeq: state.reserved } };
  return { nextSeq: used + 1 };
}

async function readState(path: string): Promise<SeqState> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { reserved: 0, lastUsed: 0, ackedUpTo: 0 };
    throw err;
  }
  const parsed = JSON.parse(text) as Partial<Record<keyof SeqState, unknown>>;
  const num = (x: unknown): number => (Number.isSafeInteger(x) && (x as number) >= 0 ? (x as number) : 0);
  return { reserved: num(parsed.reserved), lastUsed: num(parsed.lastUsed), ackedUpTo: num(parsed.ackedUpTo) };
}
