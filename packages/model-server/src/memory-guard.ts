import type { Logger } from '@conclave/common';
import type { MemoryProbe, MemorySample } from './memory-probe.js';

/** ok: serve; soft: refuse new requests; hard: emergency recovery. */
export type MemoryLevel = 'ok' | 'soft' | 'hard';

export interface MemoryGuardOptions {
  probe: MemoryProbe;
  logger: Logger;
  /** Fraction of the limit above which new requests are refused. */
  softThreshold: number;
  /** Fraction of the limit above which emergency recovery runs. */
  hardThreshold: number;
  /** Bytes that must stay free: less free than this counts as soft pressure whatever the ratio. */
  marginBytes: number;
  sampleIntervalMs: number;
  summaryIntervalMs: number;
  /** Called on each entry into the hard level. */
  onHard: (sample: MemorySample) => void;
}

/**
 * Samples memory on a timer and on demand, logs the level when it changes and
 * a summary periodically, and triggers emergency recovery on the hard level.
 */
export class MemoryGuard {
  private levelValue: MemoryLevel = 'ok';
  private last: MemorySample;
  private peakRatio = 0;
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(private readonly options: MemoryGuardOptions) {
    this.last = options.probe.sample();
  }

  start(): void {
    this.timers.push(setInterval(() => this.check(), this.options.sampleIntervalMs).unref());
    this.timers.push(setInterval(() => this.summary(), this.options.summaryIntervalMs).unref());
  }

  stop(): void {
    for (const t of this.timers.splice(0)) clearInterval(t);
  }

  get level(): MemoryLevel {
    return this.levelValue;
  }

  get sample(): MemorySample {
    return this.last;
  }

  ratio(sample: MemorySample = this.last): number {
    return sample.limitBytes > 0 ? sample.usedBytes / sample.limitBytes : 0;
  }

  /** Takes a fresh sample, updates the level, and returns it. */
  check(): MemoryLevel {
    const sample = this.options.probe.sample();
    this.last = sample;
    const ratio = this.ratio(sample);
    this.peakRatio = Math.max(this.peakRatio, ratio);
    const free = sample.limitBytes - sample.usedBytes;
    const next: MemoryLevel =
      ratio >= this.options.hardThreshold ? 'hard' : ratio >= this.options.softThreshold || free < this.options.marginBytes ? 'soft' : 'ok';
    const from = this.levelValue;
    if (next !== from) {
      this.levelValue = next;
      const meta = { from, to: next, ratio: round(ratio), usedBytes: sample.usedBytes, limitBytes: sample.limitBytes };
      if (next === 'ok') this.options.logger.info('MEM', 'memory pressure over', meta);
      else this.options.logger.warn('MEM', 'memory pressure', meta);
      if (next === 'hard') this.options.onHard(sample);
    }
    return next;
  }

  private summary(): void {
    const s = this.last;
    this.options.logger.info('MEM', 'memory summary', {
      level: this.levelValue,
      ratio: round(this.ratio(s)),
      peakRatio: round(this.peakRatio),
      usedBytes: s.usedBytes,
      limitBytes: s.limitBytes,
      rssBytes: s.rssBytes,
    });
    this.peakRatio = this.ratio(s);
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
