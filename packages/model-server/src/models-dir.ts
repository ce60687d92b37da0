import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConclaveError } from '@conclave/common';

/** One subdirectory of `--models-dir`: a model served under the subdirectory's name. */
export interface ModelsDirEntry {
  readonly id: string;
  readonly dir: string;
}

/**
 * The models under `root`, sorted by id: every subdirectory (or symlink to one)
 * whose name does not start with a dot. Nothing inside is checked here; a broken
 * model is found when a request first names it. Throws MODEL-STATE-703 when
 * `root` is not a readable directory (a configuration error).
 */
export function listModelsDir(root: string): ModelsDirEntry[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch (cause) {
    throw new ConclaveError('MODEL-STATE-703', { detail: `modelsDir: ${root} is not a readable directory`, data: { dir: root }, cause });
  }
  return names
    .filter((name) => !name.startsWith('.') && isDirectory(join(root, name)))
    .sort()
    .map((id) => ({ id, dir: join(root, id) }));
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
