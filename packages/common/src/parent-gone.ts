/**
 * Resolves with 'parent gone' when this process was started with an IPC channel (the local
 * fleet starts its node agents and model server that way) and the channel closes: the parent
 * exited, however it ended, kill -9 included. Never resolves for a process started without one
 * (systemd, a shell), so it can race a shutdown signal unconditionally.
 *
 * This is how a child never outlives the process that started it: the kernel closes the channel
 * when the parent dies, and no signal or polling is needed.
 */
export function parentGone(): Promise<string> {
  const channel = process.channel;
  if (channel === undefined) return new Promise<string>(() => undefined);
  // The channel alone must not keep the process alive after its own work is done.
  channel.unref();
  return new Promise((resolve) => {
    process.once('disconnect', () => resolve('parent gone'));
  });
}
