import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { sendRedisCommands } from '@conclave/common';
import { startRedis } from './redis.js';

describe('startRedis', () => {
  it('serves a real Redis in a temp dir that stop() removes', async () => {
    const redis = await startRedis();
    expect(redis.dir.startsWith(tmpdir())).toBe(true);
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      await client.set('conclave:test', 'v');
      expect(await client.get('conclave:test')).toBe('v');
    } finally {
      client.disconnect();
    }
    await redis.stop();
    expect(existsSync(redis.dir)).toBe(false);
    await redis.stop();
  });

  it('with a password: its URL carries it and works through ioredis, a client without it is refused', async () => {
    const redis = await startRedis({ password: 's3cret' });
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      expect(redis.url).toBe(`redis://:s3cret@${redis.host}:${redis.port}`);
      await client.connect();
      expect(await client.ping()).toBe('PONG');
      expect(await sendRedisCommands(redis.host, redis.port, [['PING']])).toEqual([expect.stringMatching(/^-NOAUTH /)]);
    } finally {
      client.disconnect();
      await redis.stop();
    }
  });
});
