// Spawns the built node agent (`pnpm build` first), as the local fleet does.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SpawnedChild } from '@conclave/common';
import { encodeJoinString, fingerprint, generateIdentity, generateJoinToken } from '@conclave/protocol';
import { spawnFleetNodeAgent } from './local-fleet.js';

describe('the local fleet\'s node agents', () => {
  let dir: string | undefined;
  let child: SpawnedChild | undefined;
  afterEach(async () => {
    await child?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it.skipIf(process.platform !== 'linux')('get their join string through the environment, never on the command line', async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-fleet-'));
    // Nothing listens on port 1: the agent takes the join string, saves it, and keeps retrying.
    const joinString = encodeJoinString({ address: '127.0.0.1:1', token: generateJoinToken(), fingerprint: fingerprint(generateIdentity().publicKey) });
    const dataDir = join(dir, 'node-0');
    child = spawnFleetNodeAgent({ orchestrator: '127.0.0.1:1', dataDir, name: 'local-0', slots: 1, join: joinString });
    const pid = child.process.pid;
    const deadline = Date.now() + 20_000;
    let state: { address?: string } | undefined;
    while (!state && Date.now() < deadline) {
      state = await readFile(join(dataDir, 'join-state.json'), 'utf8').then((t) => JSON.parse(t) as { address?: string }, () => undefined);
      if (!state) await new Promise((r) => setTimeout(r, 100));
    }
    // The agent used the join string...
    expect(state?.address).toBe('127.0.0.1:1');
    // ...which `ps` (here /proc/<pid>/cmdline, what ps reads) never showed.
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    expect(cmdline.some((arg) => arg.includes('conclave-join'))).toBe(false);
    expect(cmdline).toContain('start');
  });
});
