import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ERRORS_DOC_PATH, renderErrorsDoc } from './errors-doc.js';

// Run by `pnpm docs:errors` after a build; the errors-doc test fails until it has run.
mkdirSync(dirname(ERRORS_DOC_PATH), { recursive: true });
writeFileSync(ERRORS_DOC_PATH, renderErrorsDoc());
process.stdout.write(`wrote ${ERRORS_DOC_PATH}\n`);
