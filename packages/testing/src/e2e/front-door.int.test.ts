// The CLIs as the README tells a newcomer to run them: through pnpm, from the repository root.
// Needs pnpm on PATH (CI installs it; so does every developer who can run `pnpm test`).
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import { affineModel } from '../onnx/affine-model.js';
import { Cleanup, startChildOrchestrator, within } from './e2e-support.js';
import type { ChildOrchestratorSetup } from './e2e-support.js';

const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const run = promisify(execFile);

const cleanup = new Cleanup();
let setup: ChildOrchestratorSetup;
let clientFlags: string[];

beforeAll(async () => {
  setup = await startChildOrchestrator(cleanup);
  clientFlags = ['--address', setup.orchestrator.address, '--data-dir', setup.dataDir];
  await setup.control.addModel('front-door-model', affineModel({ seed: 3 }).bytes);
}, 30_000);
afterAll(() => cleanup.run());

describe('the front door', () => {
  it('`pnpm orchestrator … --json` prints nothing but the JSON on stdout', async () => {
    const { stdout } = await run('pnpm', ['orchestrator', 'models', 'list', '--json', ...clientFlags], { cwd: REPO_ROOT, timeout: 20_000 });
    const models = JSON.parse(stdout) as Array<{ name: string }>;
    expect(models.map((m) => m.name)).toEqual(['front-door-model']);
  }, 30_000);

  it('a reader that has gone (`| head`, `| true`) ends the command quietly, with its own exit code', async () => {
    const child = spawn(process.execPath, [ORCHESTRATOR_MAIN, 'models', 'list', '--json', ...clientFlags], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Closed before the command has written anything: its one write meets EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const code = await within(new Promise<number | null>((resolve) => child.once('exit', resolve)), 15_000, 'the CLI to exit');
    expect(stderr).toBe('');
    expect(code).toBe(0);
  }, 30_000);

  it("through pnpm and a shell pipe, stdout starts with the JSON and the exit code is the command's", async () => {
    const { stdout, stderr } = await run(
      // pipefail: $? is pnpm's exit code, not head's.
      'bash', ['-o', 'pipefail', '-c', `pnpm orchestrator models list --json ${clientFlags.join(' ')} | head -c 1; echo " rc=$?"`],
      { cwd: REPO_ROOT, timeout: 20_000 },
    );
    expect(stdout.trim()).toBe('[ rc=0');
    expect(stderr).not.toMatch(/EPIPE|Error|at /);
  }, 30_000);
});
