import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isConclaveError } from '@conclave/common';
import { tensorToJson } from '@conclave/protocol';
import { loadJobInputs, parseJobInputs } from './job-input.js';

const GOOD = '{"x": {"dtype": "float32", "dims": [1, 4], "data": [0.5, 1, 2, 3]}}';

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return isConclaveError(err) ? err.code : `not coded: ${String(err)}`;
  }
  return undefined;
}

describe('job input', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-cli-input-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('parses inline JSON into wire tensors', async () => {
    const inputs = await loadJobInputs(GOOD);
    expect(Object.keys(inputs)).toEqual(['x']);
    expect(inputs.x?.raw.byteLength).toBe(16);
    expect(tensorToJson(inputs.x!)).toEqual({ dtype: 'float32', dims: [1, 4], data: [0.5, 1, 2, 3] });
  });

  it('reads @file', async () => {
    const path = join(dir, 'input.json');
    await writeFile(path, GOOD);
    const inputs = await loadJobInputs(`@${path}`);
    expect(tensorToJson(inputs.x!).data).toEqual([0.5, 1, 2, 3]);
  });

  it('refuses malformed JSON with ORCH-REQ-250 naming where it came from', () => {
    let caught: unknown;
    try {
      parseJobInputs('{"x": {', '--input');
    } catch (err) {
      caught = err;
    }
    expect(isConclaveError(caught) && caught.code).toBe('ORCH-REQ-250');
    expect(String((caught as Error).message)).toMatch(/malformed job input: --input: invalid JSON/);
  });

  it('refuses a tensor whose data does not fill its dims, and an empty object', async () => {
    expect(await codeOf(loadJobInputs('{"x": {"dtype": "float32", "dims": [2, 2], "data": [1]}}'))).toBe('ORCH-REQ-250');
    expect(await codeOf(loadJobInputs('{"x": {"dtype": "complex64", "dims": [1], "data": [1]}}'))).toBe('ORCH-REQ-250');
    expect(await codeOf(loadJobInputs('[1, 2]'))).toBe('ORCH-REQ-250');
    expect(await codeOf(loadJobInputs('{}'))).toBe('ORCH-REQ-250');
  });

  it('refuses an unreadable @file with ORCH-REQ-251, and malformed file contents with ORCH-REQ-250', async () => {
    expect(await codeOf(loadJobInputs(`@${join(dir, 'missing.json')}`))).toBe('ORCH-REQ-251');
    expect(await codeOf(loadJobInputs('@'))).toBe('ORCH-REQ-251');
    const bad = join(dir, 'bad.json');
    await writeFile(bad, 'not json');
    expect(await codeOf(loadJobInputs(`@${bad}`))).toBe('ORCH-REQ-250');
  });
});
