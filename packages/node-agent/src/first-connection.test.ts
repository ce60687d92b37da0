import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { onFirstConnection } from './first-connection.js';

describe('onFirstConnection', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('calls back once, on the first look that finds the agent connected, and not again after a reconnect', () => {
    const agent = { connected: false };
    const onConnected = vi.fn();
    onFirstConnection(agent, onConnected, 50);
    vi.advanceTimersByTime(120);
    expect(onConnected).not.toHaveBeenCalled();
    agent.connected = true;
    vi.advanceTimersByTime(50);
    expect(onConnected).toHaveBeenCalledTimes(1);
    agent.connected = false;
    vi.advanceTimersByTime(100);
    agent.connected = true;
    vi.advanceTimersByTime(100);
    expect(onConnected).toHaveBeenCalledTimes(1);
  });

  it('calls back at once for an agent already connected', () => {
    const onConnected = vi.fn();
    onFirstConnection({ connected: true }, onConnected);
    expect(onConnected).toHaveBeenCalledTimes(1);
  });

  it('never calls back once stopped', () => {
    const agent = { connected: false };
    const onConnected = vi.fn();
    const stop = onFirstConnection(agent, onConnected, 50);
    stop();
    agent.connected = true;
    vi.advanceTimersByTime(500);
    expect(onConnected).not.toHaveBeenCalled();
  });
});
