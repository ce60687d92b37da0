import { describe, expect, it } from 'vitest';
import { toCliFlags } from './cli-flags.js';

describe('toCliFlags', () => {
  it('writes camelCase keys as kebab-case flags, each with its value in one word', () => {
    expect(toCliFlags({ dataDir: '/tmp/a b', httpPort: -1, grpcPort: 0, json: true })).toEqual([
      '--data-dir=/tmp/a b', '--http-port=-1', '--grpc-port=0', '--json',
    ]);
  });

  it('leaves out undefined and false, and keeps an empty string as a value', () => {
    expect(toCliFlags({ name: undefined, json: false, join: '' })).toEqual(['--join=']);
  });
});
