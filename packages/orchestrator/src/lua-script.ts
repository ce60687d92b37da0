import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

export type ScriptReply = Array<string | number>;

/**
 * One Lua script, run by its SHA1 (EVALSHA). Not ioredis's defineCommand: on an auto-pipelined
 * connection that sends the whole script (EVAL) with every call, and Redis hashes it each time.
 * A Redis that lost its script cache (a restart) answers NOSCRIPT: the script is loaded and the
 * call sent again at once, in the same turn, so calls keep the order they were made in.
 */
export class LuaScript {
  readonly sha: string;

  constructor(private readonly redis: Redis, private readonly lua: string, private readonly numberOfKeys: number) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  run(...args: Array<string | number>): Promise<ScriptReply> {
    return this.runWith(this.numberOfKeys, args);
  }

  /** For scripts whose key count varies per call (a batch touching several index streams). */
  runWithKeys(keys: readonly string[], args: ReadonlyArray<string | number>): Promise<ScriptReply> {
    return this.runWith(keys.length, [...keys, ...args]);
  }

  private runWith(numberOfKeys: number, args: Array<string | number>): Promise<ScriptReply> {
    return (this.redis.evalsha(this.sha, numberOfKeys, ...args) as Promise<ScriptReply>).catch((err: unknown) => {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      void this.redis.script('LOAD', this.lua).catch(() => undefined);
      return this.redis.evalsha(this.sha, numberOfKeys, ...args) as Promise<ScriptReply>;
    });
  }
}
