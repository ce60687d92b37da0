// Real child processes: small scripts that print what an executable would.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatReadinessLine } from './readiness.js';
import { spawnChild } from './spawn-child.js';

const NODE_READY = formatReadinessLine({ role: 'node-agent', node: 'n1', httpPort: null });
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'conclave-spawn-child-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function script(name: string, source: string): Promise<string> {
  const path = join(dir, `${name}.mjs`);
  await writeFile(path, source);
  return path;
}

describe('spawnChild', () => {
  it('resolves with the readiness line, keeps it out of the output lines, and stops the child with SIGTERM', async () => {
    // The SIGTERM handler first: a child that says it is ready before it can stop in order races its parent.
    const path = await script('ready', [
      "process.on('SIGTERM', () => process.exit(0));",
      "process.stderr.write('a log line\\n');",
      `process.stdout.write(${JSON.stringify(NODE_READY)});`,
      "process.stdout.write('after\\n');",
      'setInterval(() => undefined, 1000);',
    ].join('\n'));
    const lines: string[] = [];
    const child = spawnChild(path, [], { onOutputLine: (line, stream) => lines.push(`${stream}: ${line}`) });
    expect(await child.ready('node-agent')).toEqual({ role: 'node-agent', node: 'n1', httpPort: null });
    expect(await child.stop()).toBe(0);
    expect(lines.sort()).toEqual(['stderr: a log line', 'stdout: after']);
  });

  it('reads a readiness line written just before the exit', async () => {
    const path = await script('ready-then-exit', `process.stdout.write(${JSON.stringify(NODE_READY)}); process.exit(0);`);
    expect((await spawnChild(path, []).ready('node-agent')).node).toBe('n1');
  });

  it('rejects when the child exits first, with its last lines', async () => {
    const path = await script('fails', "process.stderr.write('NODE-STATE-707 cannot start\\n'); process.exit(3);");
    await expect(spawnChild(path, []).ready('node-agent')).rejects.toThrow(/exited \(3\) before it was ready; last lines:\nNODE-STATE-707 cannot start/);
  });

  it("rejects another role's line, a malformed one, and a child that stays silent", async () => {
    const other = spawnChild(await script('other', `process.stdout.write(${JSON.stringify(NODE_READY)});`), []);
    await expect(other.ready('orchestrator')).rejects.toThrow(/expected orchestrator readiness, got node-agent readiness/);
    const bad = spawnChild(await script('bad', "process.stdout.write('CONCLAVE-READY {\"role\":1}\\n');"), []);
    await expect(bad.ready('node-agent')).rejects.toThrow(/malformed readiness line/);
    const silent = spawnChild(await script('silent', 'setInterval(() => undefined, 1000);'), []);
    await expect(silent.ready('node-agent', 200)).rejects.toThrow(/not ready after 200 ms; no output/);
    expect(await silent.stop()).toBeNull();
  });
});
