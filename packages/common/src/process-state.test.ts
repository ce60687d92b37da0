import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { isProcessRunning, pidsWithArgs } from './process-state.js';

describe('process state', () => {
  it('tells a running process from one that has exited, and finds a process by its argv', async () => {
    expect(isProcessRunning(process.pid)).toBe(true);
    const marker = `conclave-process-state-test-${process.pid}`;
    // A process that never forks: `sh -c 'sleep 30'` forks a child that carries sh's argv for an
    // instant before it execs sleep, and a scan in that instant finds two pids (CI caught it).
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30_000)', marker, 'value-1'], { stdio: 'ignore' });
    const pid = child.pid!;
    expect(isProcessRunning(pid)).toBe(true);
    expect(pidsWithArgs(marker, 'value-1')).toEqual([pid]);
    expect(pidsWithArgs(marker, 'value-2')).toEqual([]);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(isProcessRunning(pid)).toBe(false);
    expect(pidsWithArgs(marker, 'value-1')).toEqual([]);
  });
});
