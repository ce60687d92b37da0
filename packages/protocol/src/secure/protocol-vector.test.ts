import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { nodeCryptoProvider, tweetnaclProvider } from './crypto-provider.js';
import { computeProtocolVector, formatProtocolVector, parseProtocolVector } from './protocol-vector.js';

const SPEC = new URL('../../../../docs/protocol.md', import.meta.url);
const BEGIN = '<!-- test-vector:begin -->';
const END = '<!-- test-vector:end -->';

describe('the test vector in docs/protocol.md', () => {
  it('matches what this implementation computes from the same fixed inputs', async () => {
    const computed = await computeProtocolVector();
    const spec = await readFile(SPEC, 'utf8');
    const start = spec.indexOf(BEGIN);
    const end = spec.indexOf(END);
    expect(start, 'docs/protocol.md has no test-vector block').toBeGreaterThan(-1);
    const block = spec.slice(start + BEGIN.length, end).replace(/```text|```/g, '');
    // On a mismatch the message carries the block to paste, after review, into the spec.
    expect(parseProtocolVector(block), `expected block:\n${formatProtocolVector(computed)}`).toEqual(computed);
  });

  it('is the same with the node:crypto fast path (deterministic primitives)', async () => {
    const a = await computeProtocolVector(tweetnaclProvider);
    const b = await computeProtocolVector(nodeCryptoProvider);
    expect(b).toEqual(a);
    expect(parseProtocolVector(formatProtocolVector(a))).toEqual(a);
  });
});
