import { fileURLToPath } from 'node:url';

/** The id the embedded demo model is served under. */
export const DEMO_MODEL_ID = 'conclave-demo';

/**
 * Where `prebuild` (scripts/build-demo-model.mjs) writes the demo model; the
 * path is the same from src/ and dist/, both one level below the package.
 */
export const DEMO_MODEL_DIR = fileURLToPath(new URL('../models-built/demo/', import.meta.url));

/** The same demo decoder without a KV cache, and with its weights in external data (tests). */
export const DEMO_NO_CACHE_MODEL_DIR = fileURLToPath(new URL('../models-built/demo-no-cache/', import.meta.url));
export const DEMO_EXTERNAL_DATA_MODEL_DIR = fileURLToPath(new URL('../models-built/demo-external-data/', import.meta.url));
