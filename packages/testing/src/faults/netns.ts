import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { fileURLToPath } from 'node:url';

/** The wrapper that runs a Node.js script inside a network namespace (in-netns-main.ts). */
export const IN_NETNS_MAIN = fileURLToPath(new URL('../../dist/faults/in-netns-main.js', import.meta.url));

/**
 * Why network namespaces cannot be used here, or undefined when they can: root, `ip` on the
 * PATH, and a namespace that can really be created (a container may forbid it).
 */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'not root: `ip netns add` needs CAP_SYS_ADMIN';
  const probe = `cprobe${randomBytes(3).toString('hex')}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.error) return `no \`ip\` (iproute2): ${add.error.message}`;
  if (add.status !== 0) return `\`ip netns add\` failed: ${add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return undefined;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A network namespace joined to this host by a veth pair on a /30 of 10.201.0.0/16: the host end
 * is `hostAddress`, the namespace end `nsAddress`. Names are unique per run (interface names
 * have at most 15 characters).
 */
export class VethNetns {
  private constructor(
    readonly name: string,
    readonly hostVeth: string,
    readonly nsVeth: string,
    readonly hostAddress: string,
    readonly nsAddress: string,
  ) {}

  static create(): VethNetns {
    const tag = randomBytes(4).toString('hex');
    // A /30 no interface here has yet; two tries at most matter in practice.
    let subnet = 0;
    for (let tries = 0; tries < 20; tries++) {
      subnet = randomInt(0, 64) * 4;
      const third = randomInt(0, 256);
      const used = execFileSync('ip', ['-o', '-4', 'addr', 'show', 'to', `10.201.${third}.${subnet}/30`], { encoding: 'utf8' });
      if (used.trim() === '') {
        const netns = new VethNetns(`cdrill${tag}`, `cdh${tag}`, `cdn${tag}`, `10.201.${third}.${subnet + 1}`, `10.201.${third}.${subnet + 2}`);
        try {
          netns.setUp();
        } catch (err) {
          netns.remove();
          throw err;
        }
        return netns;
      }
    }
    throw new Error('no free /30 in 10.201.0.0/16');
  }

  private setUp(): void {
    ip('netns', 'add', this.name);
    ip('link', 'add', this.hostVeth, 'type', 'veth', 'peer', 'name', this.nsVeth);
    ip('link', 'set', this.nsVeth, 'netns', this.name);
    ip('addr', 'add', `${this.hostAddress}/30`, 'dev', this.hostVeth);
    ip('link', 'set', this.hostVeth, 'up');
    ip('-n', this.name, 'addr', 'add', `${this.nsAddress}/30`, 'dev', this.nsVeth);
    ip('-n', this.name, 'link', 'set', this.nsVeth, 'up');
    // The agent's local HTTP server binds 127.0.0.1 inside the namespace.
    ip('-n', this.name, 'link', 'set', 'lo', 'up');
  }

  /** Takes the host end down: nothing crosses until `restore`, and neither side sees a reset. */
  cut(): void {
    ip('link', 'set', this.hostVeth, 'down');
  }

  restore(): void {
    ip('link', 'set', this.hostVeth, 'up');
  }

  /** Deletes the namespace and the pair; safe to call twice, and after a failed create. */
  remove(): void {
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
    // Deleting the namespace deletes its end, and with it the pair; this is for a half-made one.
    spawnSync('ip', ['link', 'del', this.hostVeth], { stdio: 'ignore' });
  }
}
