import { access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { EXIT_OK } from '@conclave/common';
import { fingerprint } from '@conclave/protocol';
import {
  KEY_ROTATIONS_FILE, ORCHESTRATOR_KEY_FILE, readKeyRotations, readOrchestratorKey, rotateOrchestratorKey,
} from '../key-rotation.js';
import type { RotateKeyOptions } from '../key-rotation.js';
import type { CliIo } from './cli-io.js';
import { formatJson, formatKeyValues } from './output-format.js';

export interface KeyCommandOptions {
  /** The orchestrator's data dir, already resolved (resolveKeyDataDir). */
  dataDir: string;
  json?: boolean;
}

/**
 * The data dir `key` works on: the one given (--data-dir, else CONCLAVE_DATA_DIR), else the first
 * of `candidates` (the defaults of `start` and of the local fleet) that holds orchestrator.key,
 * else the first candidate, so that the error names the place `start` would use.
 */
export async function resolveKeyDataDir(given: string | undefined, candidates: readonly string[], cwd: string): Promise<string> {
  if (given !== undefined) return resolve(cwd, given);
  for (const dir of candidates) {
    const path = resolve(cwd, dir);
    if (await access(resolve(path, ORCHESTRATOR_KEY_FILE)).then(() => true, () => false)) return path;
  }
  return resolve(cwd, candidates[0] ?? '.');
}

/** `key show`: the current key's fingerprint (what join strings pin) and how many rotations are served. */
export async function showKeyCommand(io: CliIo, options: KeyCommandOptions): Promise<number> {
  const { identity, path } = await readOrchestratorKey(options.dataDir);
  const rotations = await readKeyRotations(options.dataDir);
  const current = fingerprint(identity.publicKey);
  if (options.json) {
    io.stdout.write(formatJson({ fingerprint: current, rotations: rotations.length }));
    return EXIT_OK;
  }
  io.stdout.write(
    formatKeyValues([
      ['fingerprint', current],
      ['key', path],
      ['rotations', rotations.length === 0 ? 'none' : `${rotations.length} (${resolve(options.dataDir, KEY_ROTATIONS_FILE)})`],
    ]),
  );
  return EXIT_OK;
}

/**
 * `key rotate`: a new key in place of the old, which signs the statement that lets pinned nodes
 * follow. `--json` prints `{"old", "new"}` fingerprints.
 */
export async function rotateKeyCommand(io: CliIo, options: KeyCommandOptions & RotateKeyOptions): Promise<number> {
  const { dataDir, json, ...rotateOptions } = options;
  const rotation = await rotateOrchestratorKey(dataDir, rotateOptions);
  if (json) {
    io.stdout.write(formatJson({ old: rotation.oldFingerprint, new: rotation.newFingerprint }));
    return EXIT_OK;
  }
  io.stdout.write(
    formatKeyValues([
      ['old', rotation.oldFingerprint],
      ['new', rotation.newFingerprint],
      ['retired', rotation.retiredPath],
      ['rotations', `${rotation.rotations} (${rotation.rotationsPath})`],
    ]) +
      '\nRestart the orchestrator to use the new key: a running one keeps the old key until then.\n' +
      'Nodes pinned to the old key follow the rotation at their next connection; new join strings pin the new key.\n',
  );
  return EXIT_OK;
}
