import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The `version` of the package a module belongs to: the nearest package.json above the module's
 * file (`src/` under tests, `dist/` once built), read once at start. Each executable's
 * `--version` prints it, so a release bumps one place per package.
 */
export function packageVersion(moduleUrl: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  for (;;) {
    const text = readPackageJson(dir);
    if (text !== undefined) {
      const version = (JSON.parse(text) as { version?: unknown }).version;
      if (typeof version !== 'string' || version === '') throw new Error(`${join(dir, 'package.json')} has no version`);
      return version;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(moduleUrl)}`);
    dir = parent;
  }
}

function readPackageJson(dir: string): string | undefined {
  try {
    return readFileSync(join(dir, 'package.json'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
