import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, fsyncSync, linkSync, openSync, unlinkSync, writeSync } from 'node:fs';

/**
 * Writes `secret` and a newline to `path` (mode 0600) unless a file is there already; returns
 * false when another process won the race, whose file then stands. A private temp file is
 * linked into place: link fails if the name is taken, and a crash mid-write never leaves half a
 * secret under the real name.
 */
export function writeSecretFileOnce(path: string, secret: string): boolean {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    writeSync(fd, `${secret}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(temp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  } finally {
    unlinkSync(temp);
  }
}
