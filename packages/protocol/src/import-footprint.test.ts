import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));
const SRC_DIR = join(PACKAGE_DIR, 'src');

/** What the logger's implementation and the config parser bring, and protocol needs none of. */
const HEAVY = ['winston', 'yaml', 'zod'];

/**
 * Protocol files allowed to import @conclave/common's root entry instead of @conclave/common/core:
 * none. While one is listed, the load check of @conclave/protocol below is skipped.
 */
const ON_ROOT_ENTRY: string[] = [];

/**
 * A resolve hook records every module that ESM imports reach; require.cache adds the CommonJS
 * files those load in turn. Together: every file a fresh Node loads for `specifier`.
 */
const HOOKS = `
import { appendFileSync } from 'node:fs';
let log;
export function initialize(data) { log = data.log; }
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(log, resolved.url + '\\n');
  return resolved;
}`;

const SCRIPT = `
import { register, createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const log = process.argv[2];
register('data:text/javascript,' + encodeURIComponent(process.argv[3]), { data: { log } });
await import(process.argv[1]);
const esm = readFileSync(log, 'utf8').split('\\n').filter((url) => url.startsWith('file:')).map((url) => fileURLToPath(url));
process.stdout.write(JSON.stringify([...esm, ...Object.keys(createRequire(import.meta.url).cache)]));
`;

/** The npm packages (not workspace ones) a fresh Node loads to import `specifier` from the built dist/. */
function packagesLoadedBy(specifier: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'conclave-import-footprint-'));
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT, specifier, join(dir, 'resolved'), HOOKS], {
    cwd: PACKAGE_DIR,
    encoding: 'utf8',
  });
  rmSync(dir, { recursive: true, force: true });
  if (run.status !== 0) throw new Error(`importing ${specifier} failed: ${run.stderr}`);
  const files = JSON.parse(run.stdout) as string[];
  const names = files.flatMap((file) => /.*\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file)?.[1] ?? []);
  return [...new Set(names)].sort();
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'generated' ? [] : sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

describe('what importing protocol loads', () => {
  it('the check sees winston, yaml and zod when they load: @conclave/common loads them', () => {
    expect(packagesLoadedBy('@conclave/common')).toEqual(expect.arrayContaining(HEAVY));
  });

  it('@conclave/common/core loads none of them', () => {
    expect(packagesLoadedBy('@conclave/common/core')).toEqual([]);
  });

  it('protocol imports @conclave/common only through its core entry', () => {
    const onRoot = sourceFiles(SRC_DIR)
      .filter((file) => /from '@conclave\/common'/.test(readFileSync(file, 'utf8')))
      .map((file) => relative(SRC_DIR, file))
      .sort();
    expect(onRoot).toEqual(ON_ROOT_ENTRY);
  });

  it.skipIf(ON_ROOT_ENTRY.length > 0)('@conclave/protocol loads none of winston, yaml and zod', () => {
    const loaded = packagesLoadedBy('@conclave/protocol');
    expect(loaded).toContain('@grpc/grpc-js');
    expect(loaded.filter((name) => HEAVY.includes(name))).toEqual([]);
  });
});
