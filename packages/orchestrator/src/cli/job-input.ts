import { readFile } from 'node:fs/promises';
import { ConclaveError } from '@conclave/common';
import { tensorMapFromJson, type WireTensor } from '@conclave/protocol';

/** Reads a file as UTF-8; injected so tests need no files. */
export type ReadText = (path: string) => Promise<string>;

const readUtf8: ReadText = (path) => readFile(path, 'utf8');

/**
 * Resolves `--input`: inline JSON, or `@path` for a file holding it.
 * An unreadable file is ORCH-REQ-251.
 */
export async function readJobInputText(arg: string, read: ReadText = readUtf8): Promise<{ text: string; origin: string }> {
  if (!arg.startsWith('@')) return { text: arg, origin: '--input' };
  const path = arg.slice(1);
  if (path === '') throw new ConclaveError('ORCH-REQ-251', { detail: 'no path after "@"' });
  try {
    return { text: await read(path), origin: path };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConclaveError('ORCH-REQ-251', { detail: reason, data: { path }, cause: err });
  }
}

/**
 * Parses the JSON tensor form `{"<name>": {"dtype", "dims", "data"}}` into
 * wire tensors. Anything malformed is ORCH-REQ-250, naming where it was found.
 */
export function parseJobInputs(text: string, origin: string): Record<string, WireTensor> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConclaveError('ORCH-REQ-250', { detail: `${origin}: invalid JSON (${reason})`, cause: err });
  }
  try {
    const tensors = tensorMapFromJson(json);
    if (Object.keys(tensors).length === 0) throw new Error('no input tensors');
    return tensors;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConclaveError('ORCH-REQ-250', { detail: `${origin}: ${reason}`, cause: err });
  }
}

/** `--input` all the way to tensors. */
export async function loadJobInputs(arg: string, read: ReadText = readUtf8): Promise<Record<string, WireTensor>> {
  const { text, origin } = await readJobInputText(arg, read);
  return parseJobInputs(text, origin);
}
