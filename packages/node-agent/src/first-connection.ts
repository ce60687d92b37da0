/**
 * How often `onFirstConnection` looks. The agent's handle offers `connected` but no event for
 * it; a look every 50 ms costs nothing and delays the readiness line by at most that.
 */
export const FIRST_CONNECTION_POLL_MS = 50;

/**
 * Calls `onConnected` once, the first time `agent.connected` is true: its first session is up.
 * The returned function stops watching (the agent closes before it ever connected).
 */
export function onFirstConnection(
  agent: { readonly connected: boolean },
  onConnected: () => void,
  pollMs = FIRST_CONNECTION_POLL_MS,
): () => void {
  if (agent.connected) {
    onConnected();
    return () => undefined;
  }
  const timer = setInterval(() => {
    if (!agent.connected) return;
    clearInterval(timer);
    onConnected();
  }, pollMs);
  // An agent that never connects keeps its process alive by itself; this watch must not.
  timer.unref();
  return () => clearInterval(timer);
}
