import { describe, expect, it } from 'vitest';
import { LineSplitter } from './line-splitter.js';

function feed(max: number, chunks: string[]): Array<string | 'TOO LONG'> {
  const out: Array<string | 'TOO LONG'> = [];
  const splitter = new LineSplitter(max);
  for (const chunk of chunks) splitter.push(Buffer.from(chunk), (line) => out.push(line), () => out.push('TOO LONG'));
  return out;
}

describe('LineSplitter', () => {
  it('joins lines split across chunks, several a chunk, CRLF or LF, multi-byte characters cut anywhere', () => {
    const euro = Buffer.from('€');
    const splitter = new LineSplitter(100);
    const out: string[] = [];
    splitter.push(Buffer.concat([Buffer.from('a\r\nb\n'), euro.subarray(0, 1)]), (l) => out.push(l), () => undefined);
    splitter.push(Buffer.concat([euro.subarray(1), Buffer.from('c\nd')]), (l) => out.push(l), () => undefined);
    expect(out).toEqual(['a', 'b', '€c']);
    expect(feed(100, ['x', 'y', 'z\n'])).toEqual(['xyz']);
  });

  it('reports a line over the limit once, whether it ends in its chunk or not, and reads on after it', () => {
    expect(feed(4, ['12345\nok\n'])).toEqual(['TOO LONG', 'ok']);
    expect(feed(4, ['12', '345', '6789', '0\nok\n'])).toEqual(['TOO LONG', 'ok']);
    expect(feed(4, ['1234\n'])).toEqual(['1234']);
  });
});
