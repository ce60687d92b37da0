// Runs the built executables (`pnpm build`): `--version` prints the version in each one's own
// package.json, and nothing else, and exits 0 without starting anything.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { FLEET_MAIN } from '@conclave/fleet';
import { MODEL_SERVER_MAIN } from '@conclave/model-server';
import { NODE_AGENT_MAIN } from '@conclave/node-agent';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';

const run = promisify(execFile);

describe('--version', () => {
  it.each([
    ['orchestrator', ORCHESTRATOR_MAIN],
    ['node-agent', NODE_AGENT_MAIN],
    ['model-server', MODEL_SERVER_MAIN],
    ['the local fleet (pnpm start)', FLEET_MAIN],
  ])('%s prints its package version and exits 0', async (_name, main) => {
    // dist/main.js: the package.json is one level up.
    const { version } = JSON.parse(await readFile(join(dirname(main), '..', 'package.json'), 'utf8')) as { version: string };
    const { stdout, stderr } = await run(process.execPath, [main, '--version'], { timeout: 30_000 });
    expect(stdout).toBe(`${version}\n`);
    expect(stderr).toBe('');
  });
});
