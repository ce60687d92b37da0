/**
 * Finds stop sequences in streamed text. Text that might be the start of a
 * stop sequence is held back until it is known not to be one, so a client
 * never sees a part of a stop sequence.
 */
export class StopMatcher {
  private text = '';
  private emitted = 0;
  private readonly longest: number;

  constructor(private readonly stops: readonly string[]) {
    this.longest = stops.reduce((max, s) => Math.max(max, s.length), 0);
  }

  /** Adds generated text; returns what may be shown now, and whether a stop sequence was reached. */
  push(delta: string): { emit: string; stopped: boolean } {
    this.text += delta;
    if (this.stops.length === 0) return { emit: this.take(this.text.length), stopped: false };
    const searchFrom = Math.max(0, this.emitted - this.longest);
    let cut = -1;
    for (const stop of this.stops) {
      const at = this.text.indexOf(stop, searchFrom);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.text = this.text.slice(0, cut);
      return { emit: this.take(Math.max(cut, this.emitted)), stopped: true };
    }
    return { emit: this.take(this.text.length - this.heldBack()), stopped: false };
  }

  /** Releases held-back text at the end of generation. */
  flush(): string {
    return this.take(this.text.length);
  }

  /** All text up to the stop sequence (excluded). */
  get fullText(): string {
    return this.text;
  }

  private heldBack(): number {
    for (let n = Math.min(this.longest - 1, this.text.length); n > 0; n--) {
      const tail = this.text.slice(this.text.length - n);
      if (this.stops.some((s) => s.startsWith(tail))) return n;
    }
    return 0;
  }

  private take(upTo: number): string {
    if (upTo <= this.emitted) return '';
    const out = this.text.slice(this.emitted, upTo);
    this.emitted = upTo;
    return out;
  }
}
