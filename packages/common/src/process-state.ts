import { readFileSync, readdirSync } from 'node:fs';

/**
 * Whether `pid` names a running process. A zombie (exited, its reaping pending) counts as gone: it
 * holds no files, ports or AOF any more, and an init that reaps adopted orphans late would otherwise
 * make a dead process look alive for seconds. Without /proc (not Linux) only `kill(pid, 0)` decides.
 */
export function isProcessRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    // Gone between the two looks, or no /proc on this platform.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT' || !procExists();
  }
  // The state letter follows the parenthesised command name, which may itself hold spaces.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

function procExists(): boolean {
  try {
    readdirSync('/proc');
    return true;
  } catch {
    return false;
  }
}

/** Pids of the processes whose argv holds `marker` followed by `value` (Linux /proc; [] elsewhere). */
export function pidsWithArgs(marker: string, value: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const at = argv.indexOf(marker);
    if (at >= 0 && argv[at + 1] === value) found.push(Number(entry));
  }
  return found;
}
