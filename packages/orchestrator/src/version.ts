import { packageVersion } from '@conclave/common';

/** This package's version (package.json): `orchestrator --version`, and what the gateway tells nodes. */
export const ORCHESTRATOR_VERSION = packageVersion(import.meta.url);
