import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageVersion } from './package-version.js';

describe('packageVersion', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-version-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is this package's own version, read from its package.json", () => {
    const own = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(packageVersion(import.meta.url)).toBe(own.version);
  });

  it('takes the nearest package.json above a nested module', async () => {
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'outer', version: '9.9.9' }));
    await mkdir(join(dir, 'inner', 'dist', 'cli'), { recursive: true });
    await writeFile(join(dir, 'inner', 'package.json'), JSON.stringify({ name: 'inner', version: '1.2.3-rc.1' }));
    expect(packageVersion(pathToFileURL(join(dir, 'inner', 'dist', 'cli', 'main.js')).href)).toBe('1.2.3-rc.1');
  });

  it('refuses a package.json without a version', async () => {
    await mkdir(join(dir, 'bare', 'src'), { recursive: true });
    await writeFile(join(dir, 'bare', 'package.json'), JSON.stringify({ name: 'bare' }));
    expect(() => packageVersion(pathToFileURL(join(dir, 'bare', 'src', 'x.js')).href)).toThrow(/has no version/);
  });
});
