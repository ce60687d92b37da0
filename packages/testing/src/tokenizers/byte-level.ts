/**
 * GPT-2's byte ↔ character table (`bytes_to_unicode` in its encoder.py): printable
 * Latin-1 bytes stand for themselves, the other 68 bytes for U+0100 upwards, so
 * every byte string is a printable token string (a space is `Ġ`, U+0120).
 */
function byteTable(): string[] {
  const table: string[] = new Array<string>(256);
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable(b) ? b : next++);
  return table;
}

const BYTE_CHARS = byteTable();

/** The byte-level token string of `text` (its UTF-8 bytes, one character each). */
export function byteLevelChars(text: string): string {
  return [...Buffer.from(text, 'utf8')].map((b) => BYTE_CHARS[b] as string).join('');
}

/** All 256 byte characters in byte order: the base alphabet of a byte-level vocabulary. */
export function byteLevelAlphabet(): readonly string[] {
  return BYTE_CHARS;
}
