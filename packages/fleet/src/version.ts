import { packageVersion } from '@conclave/common';

/** This package's version (package.json): `pnpm start --version`. */
export const FLEET_VERSION = packageVersion(import.meta.url);
