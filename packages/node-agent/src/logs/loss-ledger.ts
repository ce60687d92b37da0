import { readFile } from 'node:fs/promises';
import { writeFileDurable } from '@conclave/common';
import type { SpoolDrop } from './log-spool.js';
import type { ShippedGap } from './spool-entry.js';

/** The ledger's file in the spool directory. */
export const LOSS_LEDGER_FILE = 'losses.json';

interface Loss {
  gap: ShippedGap;
  /** In a batch already: it is sent again only with that batch, never merged into. */
  sent: boolean;
}

/**
 * Records dropped from a full spool, until the orchestrator has the gap that says so: the
 * dropped segment is gone, so the gap is kept here (written durably, one small file), and a
 * restart still sends it. Drops of consecutive segments before the next batch become one gap.
 */
export class LossLedger {
  private losses: Loss[] = [];
  private saving: Promise<void> = Promise.resolve();

  private constructor(private readonly path: string) {}

  static async open(path: string): Promise<LossLedger> {
    const ledger = new LossLedger(path);
    ledger.losses = (await readGaps(path)).map((gap) => ({ gap, sent: false }));
    return ledger;
  }

  get hasUnsent(): boolean {
    return this.losses.some((loss) => !loss.sent);
  }

  /** Every gap the orchestrator may not have yet (for tests and `close`). */
  gaps(): ShippedGap[] {
    return this.losses.map((loss) => loss.gap);
  }

  /** Takes in a drop and writes the ledger; rejects when the write fails (the drop stays in memory). */
  note(drop: SpoolDrop): Promise<void> {
    const last = this.losses[this.losses.length - 1];
    if (last && !last.sent && last.gap.toSeq + 1 === drop.fromSeq) {
      last.gap = { ...last.gap, toSeq: drop.toSeq, count: last.gap.count + drop.count };
    } else {
      this.losses.push({ gap: { fromSeq: drop.fromSeq, toSeq: drop.toSeq, count: drop.count, reason: 'spool-full' }, sent: false });
    }
    return this.save();
  }

  /** The gaps no batch carries yet; from now on they belong to the batch being built. */
  takeUnsent(): ShippedGap[] {
    const unsent = this.losses.filter((loss) => !loss.sent);
    for (const loss of unsent) loss.sent = true;
    return unsent.map((loss) => loss.gap);
  }

  /** A batch carrying these gaps was acknowledged. */
  acked(gaps: readonly ShippedGap[]): Promise<void> {
    if (gaps.length === 0) return Promise.resolve();
    const before = this.losses.length;
    this.losses = this.losses.filter((loss) => !gaps.includes(loss.gap));
    return this.losses.length === before ? Promise.resolve() : this.save();
  }

  /** Writes in turn, each the ledger as it is then: the last write is the newest state. */
  private save(): Promise<void> {
    const write = this.saving.then(() => writeFileDurable(this.path, JSON.stringify(this.gaps())));
    this.saving = write.catch(() => undefined);
    return write;
  }
}

async function readGaps(path: string): Promise<ShippedGap[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed)) return [];
    return parsed.filter(
      (g): g is ShippedGap =>
        !!g && typeof g === 'object' && Number.isSafeInteger(g.fromSeq) && Number.isSafeInteger(g.toSeq) && Number.isSafeInteger(g.count),
    ).map((g) => ({ fromSeq: g.fromSeq, toSeq: g.toSeq, count: g.count, reason: 'spool-full' }));
  } catch {
    // Written durably, so never torn; a file edited by hand is no reason not to start.
    return [];
  }
}
