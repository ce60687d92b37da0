import { packageVersion } from '@conclave/common';

/** This package's version (package.json): `node-agent --version`. */
export const AGENT_VERSION = packageVersion(import.meta.url);
