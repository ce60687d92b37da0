/** Process exit codes of the CLIs (shared by the three executables); docs/cli.md lists them. */
export { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '@conclave/common';
