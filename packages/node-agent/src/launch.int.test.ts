// Runs the built CLI (`pnpm build`): the argv builder may only use flags `start --help` lists.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { NODE_AGENT_MAIN, nodeAgentStartArgv } from './launch.js';

describe('nodeAgentStartArgv', () => {
  it('builds `start` with flags the CLI accepts', () => {
    const argv = nodeAgentStartArgv({
      dataDir: '/d', orchestrator: '127.0.0.1:7400', join: 'conclave-join:v1:x', name: 'n', slots: 2,
      httpHost: '127.0.0.1', httpPort: -1, logLevel: 'warn',
    });
    expect(argv).toEqual([
      'start', '--data-dir=/d', '--orchestrator=127.0.0.1:7400', '--join=conclave-join:v1:x', '--name=n', '--slots=2',
      '--http-host=127.0.0.1', '--http-port=-1', '--log-level=warn',
    ]);
    const help = execFileSync(process.execPath, [NODE_AGENT_MAIN, 'start', '--help'], { encoding: 'utf8' });
    expect(argv.slice(1).map((word) => word.split('=')[0]).filter((flag) => !help.includes(`${flag} `))).toEqual([]);
  });
});
