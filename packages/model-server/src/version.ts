import { packageVersion } from '@conclave/common';

/** This package's version (package.json): `model-server --version`. */
export const MODEL_SERVER_VERSION = packageVersion(import.meta.url);
