import type { LogPrefix, Section } from '../../logger.js';
import type { ErrorEntry } from '../error-entry.js';

/** The shape every catalog key must have; checked again at load time with the number range. */
export type CodeShape = `${LogPrefix}-${Section}-${number}`;

/**
 * Declares a block of catalog entries. The mapped type makes a malformed key
 * (`'NODE-LAOD-104'`) a compile error in the file that declares it.
 */
export function defineErrors<const T extends Record<string, ErrorEntry>>(
  entries: T & { [K in keyof T]: K extends CodeShape ? ErrorEntry : never },
): T {
  return entries;
}
