// Runs the built CLI (`pnpm build`): the argv builder may only use flags `start --help` lists.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ORCHESTRATOR_MAIN, orchestratorStartArgv } from './launch.js';

describe('orchestratorStartArgv', () => {
  it('builds `start` with flags the CLI accepts', () => {
    const argv = orchestratorStartArgv({
      dataDir: '/d', redisUrl: 'redis://127.0.0.1:6379', grpcHost: '127.0.0.1', grpcPort: 0, httpHost: '127.0.0.1', httpPort: -1,
    });
    expect(argv).toEqual([
      'start', '--data-dir=/d', '--redis-url=redis://127.0.0.1:6379', '--grpc-host=127.0.0.1', '--grpc-port=0',
      '--http-host=127.0.0.1', '--http-port=-1',
    ]);
    const help = execFileSync(process.execPath, [ORCHESTRATOR_MAIN, 'start', '--help'], { encoding: 'utf8' });
    expect(argv.slice(1).map((word) => word.split('=')[0]).filter((flag) => !help.includes(`${flag} `))).toEqual([]);
  });
});
