/**
 * The exit codes of every Conclave executable (orchestrator, node-agent, model-server, the local
 * fleet); docs/cli.md has the table. No executable uses any other.
 */
export const EXIT_OK = 0;
/** A start-up failure, an error from the orchestrator, or a job that did not complete. */
export const EXIT_FAILURE = 1;
/** Bad input caught before anything started or was sent: the command line, configuration, files. */
export const EXIT_USAGE = 2;
/** `chat claim`: the resource is held by another member (CHAT-STATE-702); the answer names the holder. */
export const EXIT_CLAIM_HELD = 3;
/** A second shutdown signal during shutdown: 128 + SIGINT, as shells report it. */
export const EXIT_FORCED = 130;
