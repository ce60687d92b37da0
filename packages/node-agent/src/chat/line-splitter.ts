const NEWLINE = 0x0a;

/**
 * Splits a byte stream into newline-terminated lines of at most `maxLineBytes` (the newline not
 * counted, a trailing `\r` dropped). A longer line is reported once as too long and skipped up
 * to its newline, so one bad line never costs the reader the lines after it, and never more than
 * `maxLineBytes` is held for a line.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private skipping = false;

  constructor(private readonly maxLineBytes: number) {}

  /** Feeds one chunk; calls `line` for each complete line and `tooLong` once per line over the limit. */
  push(chunk: Buffer, line: (text: string) => void, tooLong: () => void): void {
    let start = 0;
    for (;;) {
      const end = chunk.indexOf(NEWLINE, start);
      if (end === -1) break;
      if (this.skipping) {
        this.skipping = false;
      } else if (this.partBytes + end - start > this.maxLineBytes) {
        this.reset();
        tooLong();
      } else {
        const piece = chunk.subarray(start, end);
        const whole = this.partBytes === 0 ? piece : Buffer.concat([...this.parts, piece]);
        this.reset();
        line(stripCarriageReturn(whole.toString('utf8')));
      }
      start = end + 1;
    }
    if (start >= chunk.length || this.skipping) return;
    const rest = chunk.subarray(start);
    if (this.partBytes + rest.length > this.maxLineBytes) {
      this.reset();
      this.skipping = true;
      tooLong();
      return;
    }
    // A copy: the caller's chunk may be a pooled buffer it reuses.
    this.parts.push(Buffer.from(rest));
    this.partBytes += rest.length;
  }

  private reset(): void {
    this.parts = [];
    this.partBytes = 0;
  }
}

function stripCarriageReturn(text: string): string {
  return text.endsWith('\r') ? text.slice(0, -1) : text;
}
