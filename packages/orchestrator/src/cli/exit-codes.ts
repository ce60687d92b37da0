/** Process exit codes of the CLIs; docs/cli.md lists them. */
export const EXIT_OK = 0;
/** A startup failure, an error from the orchestrator, an unreachable orchestrator, or a job that did not complete. */
export const EXIT_FAILURE = 1;
/** Bad input caught before anything was sent: flags, JSON, unreadable files, configuration. */
export const EXIT_USAGE = 2;
