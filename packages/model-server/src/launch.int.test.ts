// Runs the built CLI (`pnpm build`): the argv builder may only use flags `start --help` lists.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { MODEL_SERVER_MAIN, modelServerStartArgv } from './launch.js';

describe('modelServerStartArgv', () => {
  it('builds `start` with flags the CLI accepts', () => {
    const argv = modelServerStartArgv({
      model: '/m', host: '127.0.0.1', port: 0, concurrency: 4, queueLimit: 8, logLevel: 'warn',
      orchestrator: '127.0.0.1:7400', dataDir: '/d',
    });
    expect(argv).toEqual([
      'start', '--model=/m', '--host=127.0.0.1', '--port=0', '--concurrency=4', '--queue-limit=8', '--log-level=warn',
      '--orchestrator=127.0.0.1:7400', '--data-dir=/d',
    ]);
    const help = execFileSync(process.execPath, [MODEL_SERVER_MAIN, 'start', '--help'], { encoding: 'utf8' });
    expect(argv.slice(1).map((word) => word.split('=')[0]).filter((flag) => !help.includes(`${flag} `))).toEqual([]);
  });
});
