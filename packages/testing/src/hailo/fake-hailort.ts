import { rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: this file is packages/testing/{src,dist}/hailo/. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/** The Python sidecar's directory (deploy/hailo-sidecar) and its entry script. */
export const HAILO_SIDECAR_DIR = join(ROOT, 'deploy', 'hailo-sidecar');
export const HAILO_SIDECAR_SCRIPT = join(HAILO_SIDECAR_DIR, 'conclave-hailo-sidecar');
/** The directory that holds the fake `hailo_platform` package; put it first on PYTHONPATH. */
export const FAKE_HAILORT_DIR = join(ROOT, 'packages', 'testing', 'fake-hailort');

/** One vstream of a fake HEF: per-frame shape, host dtype, optional quantization. */
export interface FakeHefStream {
  name: string;
  shape: number[];
  /** @default 'float32' */
  dtype?: 'uint8' | 'float32';
  /** Used when the host format of an output is uint8. @default 1 */
  qp_scale?: number;
  /** @default 0 */
  qp_zp?: number;
  /** Added to this output (to tell several outputs apart). @default 0 */
  offset?: number;
}

/** What the fake computes per frame, on the flattened input as float32. */
export type FakeHefOp =
  | { kind: 'affine'; weights: number[][]; bias: number[] }
  | { kind: 'scale'; a: number; b: number }
  | { kind: 'slice_scale'; count: number; a: number };

export interface FakeHef {
  arch: 'hailo8' | 'hailo8l';
  inputs: FakeHefStream[];
  outputs: FakeHefStream[];
  op: FakeHefOp;
  /** Rounds outputs to multiples of this (int8-like noise). */
  quant_step?: number;
}

/** Faults the fake reads from its fault file before every VDevice open and every inference. */
export interface FakeHailortFaults {
  /** Each inference sleeps this long (past its timeout: HailoRTTimeout). */
  slow_ms?: number;
  /** The sidecar process exits with code 70 inside the inference. */
  crash?: boolean;
  /** Opening the VDevice fails as HailoRT does when another process holds the chip. */
  device_busy?: boolean;
  /** Added to every output element. */
  drift?: number;
  /** The inference blocks until its timeout, then raises HailoRTTimeout. */
  hang?: boolean;
  /** The inference raises a HailoRTException with these words. */
  fail?: string;
}

/** Writes a fake HEF (a JSON file the fake HailoRT loads) to `path`. */
export async function writeFakeHef(path: string, hef: FakeHef): Promise<void> {
  await writeFile(path, JSON.stringify({ fake_hef: 1, ...hef }));
}

/**
 * Replaces the fault file atomically (the sidecar may read it at any moment); `{}` clears
 * every fault.
 */
export async function setFakeFaults(path: string, faults: FakeHailortFaults): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(faults));
  await rename(tmp, path);
}

export interface FakeSidecarEnvOptions {
  /** The fake chip. @default 'HAILO8' */
  arch?: 'HAILO8' | 'HAILO8L';
  /** The fault file (it need not exist yet: missing means no faults). */
  faultsPath?: string;
  /** A file the fake appends one JSON line to per HailoRT call ({"frames": n, "hef": path}). */
  callLogPath?: string;
}

/** The environment that makes the sidecar run on the fake HailoRT (add it to process.env). */
export function fakeSidecarEnv(options: FakeSidecarEnvOptions = {}): Record<string, string> {
  return {
    PYTHONPATH: FAKE_HAILORT_DIR,
    // Keeps __pycache__ out of the source tree.
    PYTHONDONTWRITEBYTECODE: '1',
    CONCLAVE_FAKE_HAILORT_ARCH: options.arch ?? 'HAILO8',
    ...(options.faultsPath ? { CONCLAVE_FAKE_HAILORT_FAULTS: options.faultsPath } : {}),
    ...(options.callLogPath ? { CONCLAVE_FAKE_HAILORT_CALL_LOG: options.callLogPath } : {}),
  };
}
