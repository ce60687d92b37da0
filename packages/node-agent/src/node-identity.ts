import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const NODE_ID_FILE = 'node-id';

/**
 * The node's stable id, kept in its data dir so that a restart comes back as the same node.
 * 16 random bytes in hex; an id derived from the node's key replaces it with secure sessions.
 */
export async function loadOrCreateNodeId(dataDir: string): Promise<string> {
  const path = join(dataDir, NODE_ID_FILE);
  try {
    const id = (await readFile(path, 'utf8')).trim();
    if (/^[0-9a-f]{32}$/.test(id)) return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dataDir, { recursive: true });
  const id = randomBytes(16).toString('hex');
  await writeFile(path, `${id}\n`, { mode: 0o600 });
  return id;
}
