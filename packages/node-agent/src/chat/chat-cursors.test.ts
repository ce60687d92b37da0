import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureLogger } from '@conclave/common';
import { waitUntil } from '@conclave/testing';
import { ChatCursors } from './chat-cursors.js';

describe('ChatCursors', () => {
  let dir: string;
  let path: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chat-cursors-'));
    path = join(dir, 'chat', 'cursors.json');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('writes the cursors soon after a change, coalescing many changes into one write, and reads them back', async () => {
    const cursors = await ChatCursors.open(path, { flushIntervalMs: 50 });
    for (let seq = 1; seq <= 500; seq += 1) cursors.set('fleet', { epoch: 'e1', seq });
    cursors.set('ops', { epoch: 'e2', seq: 7 });
    await waitUntil(async () => (await readFile(path, 'utf8').catch(() => '')).includes('"seq":500'), { what: 'the cursor file' });
    const again = await ChatCursors.open(path);
    expect(again.list()).toEqual(['fleet', 'ops']);
    expect(again.get('fleet')).toEqual({ epoch: 'e1', seq: 500 });
    expect(again.get('ops')).toEqual({ epoch: 'e2', seq: 7 });
    await cursors.close();
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'chat'))).mode & 0o777).toBe(0o700);
  });

  it('writes what changed on close, without waiting for the interval', async () => {
    const cursors = await ChatCursors.open(path, { flushIntervalMs: 60_000 });
    cursors.set('fleet', { epoch: 'e1', seq: 3 });
    cursors.set('gone', { epoch: 'e1', seq: 1 });
    cursors.delete('gone');
    await cursors.close();
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ version: 1, rooms: { fleet: { epoch: 'e1', seq: 3 } } });
  });

  it('starts without cursors (a resync, not a crash) from a file edited into nonsense, and says so', async () => {
    await (await ChatCursors.open(path)).close();
    await writeFile(path, '{not json');
    const logs = captureLogger('CHAT');
    const cursors = await ChatCursors.open(path, { logger: logs.logger });
    expect(cursors.list()).toEqual([]);
    expect(logs.lines.some((l) => l.includes('CHAT-STATE') && l.includes('unreadable'))).toBe(true);
    await cursors.close();
  });
});
