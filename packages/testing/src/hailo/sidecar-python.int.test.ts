// Runs the Python sidecar's own tests (deploy/hailo-sidecar/tests: the codec, and the real sidecar
// process on a real unix socket against the fake HailoRT) from vitest, the project's one runner.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FAKE_HAILORT_DIR, HAILO_SIDECAR_DIR } from './fake-hailort.js';

/** The suite takes about 11 s here; this bound stops a hung sidecar from hanging CI. */
const SUITE_TIMEOUT_MS = 120_000;

describe('the Hailo sidecar (Python, against the fake HailoRT)', () => {
  it('passes its unittest suite', async () => {
    const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
      execFile(
        'python3',
        ['-m', 'unittest', 'discover', '-s', join(HAILO_SIDECAR_DIR, 'tests'), '-t', join(HAILO_SIDECAR_DIR, 'tests')],
        {
          cwd: HAILO_SIDECAR_DIR,
          env: { ...process.env, PYTHONPATH: FAKE_HAILORT_DIR, PYTHONDONTWRITEBYTECODE: '1' },
          timeout: SUITE_TIMEOUT_MS,
          killSignal: 'SIGKILL',
          maxBuffer: 16 * 1024 * 1024,
        },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
          resolve({ code, output: `${stdout}${stderr}` });
        },
      );
    });
    // The whole unittest report is the failure message.
    expect(result.code, result.output).toBe(0);
    expect(result.output).toMatch(/^OK/m);
  }, SUITE_TIMEOUT_MS + 10_000);
});
