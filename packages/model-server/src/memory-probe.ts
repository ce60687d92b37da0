import { readFileSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';

/** One reading of the memory available to this process. */
export interface MemorySample {
  /** Bytes in use against the limit (cgroup working set, or host total minus available). */
  readonly usedBytes: number;
  /** The memory available to the process: the cgroup v2 limit if set, else the host's RAM. */
  readonly limitBytes: number;
  /** This process's resident set. */
  readonly rssBytes: number;
}

/** Where memory readings come from; injected so tests can set the pressure. */
export interface MemoryProbe {
  sample(): MemorySample;
}

const CGROUP_DIR = '/sys/fs/cgroup';

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Reads cgroup v2 (`memory.max`, `memory.current` minus `inactive_file`, which
 * is what the kernel reclaims first and what kubelet calls the working set) and
 * falls back to /proc/meminfo's MemAvailable against os.totalmem().
 */
export class SystemMemoryProbe implements MemoryProbe {
  constructor(private readonly cgroupDir: string = CGROUP_DIR) {}

  sample(): MemorySample {
    const rssBytes = process.memoryUsage.rss();
    const total = totalmem();
    const max = readText(`${this.cgroupDir}/memory.max`);
    const current = readText(`${this.cgroupDir}/memory.current`);
    if (max !== undefined && max !== 'max' && current !== undefined) {
      const limitBytes = Math.min(Number(max), total);
      const inactive = /^inactive_file (\d+)$/m.exec(readText(`${this.cgroupDir}/memory.stat`) ?? '');
      const usedBytes = Math.max(0, Number(current) - Number(inactive?.[1] ?? 0));
      return { usedBytes, limitBytes, rssBytes };
    }
    const available = /^MemAvailable:\s+(\d+) kB$/m.exec(readText('/proc/meminfo') ?? '');
    const free = available ? Number(available[1]) * 1024 : freemem();
    return { usedBytes: Math.max(0, total - free), limitBytes: total, rssBytes };
  }
}

/** A probe whose readings are set by hand: tests and simulations of pressure. */
export class FixedMemoryProbe implements MemoryProbe {
  private current: MemorySample;

  constructor(sample: Partial<MemorySample> = {}) {
    this.current = { usedBytes: 0, limitBytes: 8 * 2 ** 30, rssBytes: 0, ...sample };
  }

  set(sample: Partial<MemorySample>): void {
    this.current = { ...this.current, ...sample };
  }

  sample(): MemorySample {
    return this.current;
  }
}
