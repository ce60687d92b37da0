import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
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

  it('works with a password through ioredis', async () => {
    const redis = await startRedis({ password: 's3cret' });
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      expect(await client.ping()).toBe('PONG');
    } finally {
      client.disconnect();
      await redis.stop();
    }
  });
});
