import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CATALOG } from './catalog/index.js';
import { ERRORS_DOC_PATH, renderErrorsDoc } from './errors-doc.js';

describe('renderErrorsDoc', () => {
  it('lists every code once', () => {
    const doc = renderErrorsDoc();
    for (const entry of CATALOG) {
      expect(doc.split(`| \`${entry.code}\` |`).length - 1).toBe(1);
    }
  });

  it('matches docs/errors.md', () => {
    let onDisk = '';
    try {
      onDisk = readFileSync(ERRORS_DOC_PATH, 'utf8');
    } catch {
      // A missing file is the same failure as a stale one.
    }
    expect(onDisk === renderErrorsDoc(), 'docs/errors.md is stale: run `pnpm exec tsc -b packages/common && pnpm docs:errors`').toBe(true);
  });
});
