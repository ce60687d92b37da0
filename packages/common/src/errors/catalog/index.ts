import { SECTIONS, type LogPrefix, type Section } from '../../logger.js';
import type { CatalogEntry, ErrorEntry } from '../error-entry.js';
import { AUTH_ERRORS } from './auth.js';
import { CHAT_ERRORS } from './chat.js';
import { HAILO_ERRORS } from './hailo.js';
import { COMMON_ERRORS } from './common.js';
import { LOG_ERRORS } from './logs.js';
import { MODEL_ERRORS } from './model.js';
import { NODE_INFERENCE_ERRORS } from './node-inference.js';
import { NODE_ERRORS } from './node.js';
import { ORCH_ERRORS } from './orch.js';

/** Every catalog code; a typo is a compile error (`new ConclaveError('TYPO')`). */
export type ErrorCode =
  | keyof typeof COMMON_ERRORS
  | keyof typeof ORCH_ERRORS
  | keyof typeof NODE_ERRORS
  | keyof typeof NODE_INFERENCE_ERRORS
  | keyof typeof MODEL_ERRORS
  | keyof typeof AUTH_ERRORS
  | keyof typeof CHAT_ERRORS
  | keyof typeof LOG_ERRORS
  | keyof typeof HAILO_ERRORS;

/** The numbers each section may use, inclusive; SCHED shares the 8xx block with JOB. */
export const SECTION_RANGES: Readonly<Record<Section, readonly [number, number]>> = {
  LOAD: [100, 199],
  REQ: [200, 299],
  RESP: [300, 399],
  MEM: [400, 499],
  AUTH: [500, 599],
  NET: [600, 699],
  STATE: [700, 799],
  JOB: [800, 849],
  SCHED: [850, 899],
  HEALTH: [900, 949],
  CLEAN: [950, 999],
};

export const LOG_PREFIXES: readonly LogPrefix[] = ['ORCH', 'NODE', 'CHAT', 'MODEL'];

const CODE_PATTERN = new RegExp(`^(${LOG_PREFIXES.join('|')})-(${SECTIONS.join('|')})-(\\d{3})$`);

/** Splits a code into its parts, or returns undefined when it is not well formed or out of its section's range. */
export function parseErrorCode(
  code: string,
): { prefix: LogPrefix; section: Section; number: number } | undefined {
  const match = CODE_PATTERN.exec(code);
  if (!match) return undefined;
  const prefix = match[1] as LogPrefix;
  const section = match[2] as Section;
  const number = Number(match[3]);
  const [low, high] = SECTION_RANGES[section];
  if (number < low || number > high) return undefined;
  return { prefix, section, number };
}

/**
 * Merges the per-owner blocks. Runs at module load so that a duplicate or
 * malformed code stops every process and test at once instead of shadowing.
 */
export function buildCatalog(
  blocks: ReadonlyArray<Readonly<Record<string, ErrorEntry>>>,
): ReadonlyMap<string, CatalogEntry> {
  const byCode = new Map<string, CatalogEntry>();
  for (const block of blocks) {
    for (const [code, entry] of Object.entries(block)) {
      if (byCode.has(code)) throw new Error(`error catalog: duplicate code ${code}`);
      const parts = parseErrorCode(code);
      if (!parts) {
        throw new Error(
          `error catalog: malformed code ${code} (want <ORCH|NODE|CHAT|MODEL>-<SECTION>-<NNN> with NNN in the section's range)`,
        );
      }
      byCode.set(code, Object.freeze({ ...entry, code, ...parts }));
    }
  }
  return new Map([...byCode.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const BY_CODE = buildCatalog([
  COMMON_ERRORS,
  ORCH_ERRORS,
  NODE_ERRORS,
  NODE_INFERENCE_ERRORS,
  MODEL_ERRORS,
  AUTH_ERRORS,
  CHAT_ERRORS,
  LOG_ERRORS,
  HAILO_ERRORS,
]);

/** All entries, sorted by code. */
export const CATALOG: readonly CatalogEntry[] = Object.freeze([...BY_CODE.values()]);

/** The entry for a code; throws for an unknown code (only reachable by casting). */
export function lookupError(code: ErrorCode): CatalogEntry {
  const entry = BY_CODE.get(code);
  if (!entry) throw new Error(`error catalog: unknown code ${String(code)}`);
  return entry;
}

/** Whether a string is a code in the catalog (for codes that arrive over the wire or in logs). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && BY_CODE.has(code);
}

export { defineErrors, type CodeShape } from './define-errors.js';
