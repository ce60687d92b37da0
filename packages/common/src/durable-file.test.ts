import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensurePrivateDir, renameDurable, writeFileDurable, type DurableFs } from './durable-file.js';

/** node:fs/promises, recording each step: `open <path>`, `sync <path>`, `rename <from> <to>`. */
function watchedFs(steps: string[], failOn?: string): DurableFs {
  return {
    open: (async (path: string, flags?: string, mode?: number) => {
      const handle = await open(path, flags, mode);
      steps.push(`open ${String(path)}`);
      const sync = handle.sync.bind(handle);
      const writeFile = handle.writeFile.bind(handle);
      return Object.assign(handle, {
        sync: async () => {
          steps.push(`sync ${String(path)}`);
          await sync();
        },
        writeFile: async (data: string | Uint8Array) => {
          if (failOn === 'write') {
            await writeFile(Buffer.from(data).subarray(0, 1));
            throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
          }
          await writeFile(data);
        },
      });
    }) as DurableFs['open'],
    rename: async (from, to) => {
      steps.push(`rename ${String(from)} ${String(to)}`);
      await rename(from, to);
    },
    rm,
  };
}

describe('writeFileDurable', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'durable-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('fsyncs the temporary file before the rename and the directory after it', async () => {
    const steps: string[] = [];
    const path = join(dir, 'result.json');
    await writeFileDurable(path, '{"ok":true}', { fs: watchedFs(steps) });
    expect(await readFile(path, 'utf8')).toBe('{"ok":true}');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const temp = steps[0]?.slice('open '.length) ?? '';
    expect(temp).toMatch(/\/\.result\.json\.[0-9a-f]{12}\.tmp$/);
    expect(steps).toEqual([`open ${temp}`, `sync ${temp}`, `rename ${temp} ${path}`, `open ${dir}`, `sync ${dir}`]);
    expect(await readdir(dir)).toEqual(['result.json']);
  });

  it('replaces a file whole and keeps a given mode', async () => {
    const path = join(dir, 'state.json');
    await writeFileDurable(path, 'old contents, longer');
    await writeFileDurable(path, Buffer.from('new'), { mode: 0o640 });
    expect(await readFile(path, 'utf8')).toBe('new');
  });

  it('a failed write leaves the old file and no partial one', async () => {
    const path = join(dir, 'state.json');
    await writeFileDurable(path, 'old');
    const steps: string[] = [];
    await expect(writeFileDurable(path, 'new contents', { fs: watchedFs(steps, 'write') })).rejects.toThrow('ENOSPC');
    expect(await readFile(path, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['state.json']);
    expect(steps.some((s) => s.startsWith('rename'))).toBe(false);
  });
});

describe('renameDurable', () => {
  it('fsyncs the target directory after the rename', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'durable-'));
    try {
      const from = join(dir, 'a.part');
      await (await open(from, 'w')).close();
      const steps: string[] = [];
      await renameDurable(from, join(dir, 'a.onnx'), watchedFs(steps));
      expect(steps).toEqual([`rename ${from} ${join(dir, 'a.onnx')}`, `open ${dir}`, `sync ${dir}`]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('ensurePrivateDir', () => {
  it('creates directories 0700 and tightens an existing 0755 one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'durable-'));
    try {
      const fresh = join(dir, 'a', 'b');
      await ensurePrivateDir(fresh);
      expect((await stat(fresh)).mode & 0o777).toBe(0o700);
      const loose = join(dir, 'loose');
      await mkdir(loose, { mode: 0o755 });
      await ensurePrivateDir(loose);
      expect((await stat(loose)).mode & 0o777).toBe(0o700);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
