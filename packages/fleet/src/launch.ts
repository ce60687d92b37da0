import { fileURLToPath } from 'node:url';

/**
 * The local fleet's executable (what `pnpm start` runs after the build). `../dist/` from here is
 * the same file from src/ (under vitest) and from dist/, both one level below the package.
 */
export const FLEET_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
