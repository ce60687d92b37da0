// The fleet dashboard in a real browser: `orchestrator start` as a child, Debian's Chromium driven
// by playwright-core (no browser is downloaded), a node agent that joins, a job, a chat message
// and the log tail, all seen arriving on a page that never reloads. Needs the build (`pnpm build`)
// and /usr/bin/chromium (`.ci/run` installs it; without it this file is skipped, except in CI).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ORCHESTRATOR_MAIN } from '@conclave/orchestrator';
import { spawnNodeAgent, tempDir } from '../fleet.js';
import { affineModel } from '../onnx/affine-model.js';
import { Cleanup, affineInput, startChildOrchestrator, wireInputs, type ChildOrchestratorSetup } from './e2e-support.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** How long the page may take to show a change: the stream pushes within about a second. */
const SHOWN_WITHIN_MS = 15_000;

const chromiumPresent = existsSync(CHROMIUM);
const skip = !chromiumPresent && !process.env.CI;
if (skip) console.warn(`dashboard e2e skipped: ${CHROMIUM} is missing (apt-get install -y chromium); in CI it fails instead`);

function chatSend(setup: ChildOrchestratorSetup, text: string): Promise<void> {
  const env = { ...process.env, CONCLAVE_ADDRESS: setup.orchestrator.address, CONCLAVE_OPERATOR_TOKEN: setup.orchestrator.operatorToken };
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [ORCHESTRATOR_MAIN, 'chat', 'send', 'fleet', text], { env, timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`chat send failed: ${stderr}`, { cause: err }));
      else resolve();
    });
  });
}

describe.skipIf(skip)('the fleet dashboard in Chromium', () => {
  const cleanup = new Cleanup();
  let setup: ChildOrchestratorSetup;
  let context: BrowserContext;
  let page: Page;
  let dashboardUrl: string;
  const problems: string[] = [];

  beforeAll(async () => {
    if (!chromiumPresent) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium (apt-get install -y chromium)`);
    setup = await startChildOrchestrator(cleanup);
    if (setup.orchestrator.httpPort === null) throw new Error('the orchestrator serves no HTTP');
    dashboardUrl = `http://127.0.0.1:${setup.orchestrator.httpPort}/dashboard`;
    await setup.control.addModel('affine', affineModel({ seed: 5 }).bytes);
    const profile = await tempDir('conclave-e2e-chromium-');
    cleanup.add(() => profile.remove());
    context = await chromium.launchPersistentContext(profile.path, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000,
    });
    cleanup.add(() => context.close());
    context.setDefaultTimeout(SHOWN_WITHIN_MS);
    page = context.pages()[0] ?? (await context.newPage());
    // A CSP refusal or a script error is a failure of the page, even when what it shows is right.
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  }, 60_000);

  afterAll(() => cleanup.run(), 30_000);

  it('refuses a wrong token, then shows a node joining, a job completing, a chat message and log lines live', async () => {
    await page.goto(dashboardUrl);
    await page.locator('input[name="token"]').fill('not-the-operator-token');
    await page.locator('button[type="submit"]').click();
    await page.getByText('That is not the operator token.').waitFor();

    await page.locator('input[name="token"]').fill(setup.orchestrator.operatorToken);
    await page.locator('button[type="submit"]').click();
    await page.locator('#nodes').waitFor();
    // The browser reported the refused login's 401 as a failed load: that one was asked for.
    problems.length = 0;
    // The stream replaces the tail's placeholder: from here on the page is live.
    await page.locator('#logs').getByText('Connecting to the live tail…').waitFor({ state: 'detached' });
    let navigations = 0;
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations++;
    });

    const name = '<b>edge</b> & 1';
    const nodeDir = await tempDir('conclave-e2e-node-');
    cleanup.add(() => nodeDir.remove());
    const node = await spawnNodeAgent({ orchestrator: setup.orchestrator, dataDir: nodeDir.path, name, slots: 2 });
    cleanup.add(() => node.stop());
    const row = page.locator(`#nodes tr[data-node-id="${node.nodeId}"]`);
    // Exactly: an enrolled node shows first as "disconnected" (its id for a name) until its session is live.
    await row.locator('.state', { hasText: /^connected$/ }).waitFor();
    expect(await row.locator('.name').textContent()).toBe(name);
    expect(await page.locator('#nodes b').count()).toBe(0);

    const job = await setup.control.run('affine', wireInputs(affineInput(3)));
    expect(job.state).toBe('JOB_STATE_COMPLETED');
    const jobRow = page.locator(`#jobs-finished tr[data-job-id="${job.id}"][data-job-state="completed"]`);
    await jobRow.waitFor();
    expect(await jobRow.textContent()).toContain(name);

    const text = '<script>document.title = "owned"</script> hello from the e2e';
    await chatSend(setup, text);
    await page.locator('#chat .text', { hasText: 'hello from the e2e' }).waitFor();
    expect(await page.locator('#chat .text', { hasText: 'hello from the e2e' }).textContent()).toBe(text);
    expect(await page.locator('#chat script').count()).toBe(0);

    // The orchestrator's own records and those the node shipped reach the tail through the log store.
    const line = (tag: string) => page.locator('#logs li').filter({ has: page.locator('.tag', { hasText: new RegExp(`^${tag}$`) }) });
    await line('ORCH-JOB').filter({ hasText: 'job completed' }).filter({ hasText: `job=${job.id}` }).waitFor();
    const shipped = line('NODE-JOB').filter({ hasText: `job=${job.id}` }).first();
    await shipped.waitFor();
    expect(await shipped.locator('.node').textContent()).toBe(name);
    await line('ORCH-NET').filter({ hasText: 'node registered' }).first().waitFor();

    expect(await page.title()).toBe('Conclave fleet');
    expect(navigations).toBe(0);
    expect(problems).toEqual([]);
  }, 60_000);
});
