import { tensorFromTypedArray, typedArrayFromTensor } from '@conclave/protocol';
import type { RedisServerHandle } from '@conclave/common';
import type { Job__Output, WireTensor } from '@conclave/protocol';
import { createTestControl } from '../control.js';
import type { TestControl } from '../control.js';
import { spawnOrchestrator, tempDir } from '../fleet.js';
import type { HostTensor } from '../onnx/host-tensor.js';
import type { TinyModel } from '../onnx/tiny-model.js';
import { startRedis } from '../redis.js';

/** A host tensor as the Control API takes it. */
export function wire(t: HostTensor): WireTensor {
  return tensorFromTypedArray(t.dtype, t.dims, t.data);
}

/** Every input of `inputs` as a wire tensor. */
export function wireInputs(inputs: Readonly<Record<string, HostTensor>>): Record<string, WireTensor> {
  return Object.fromEntries(Object.entries(inputs).map(([name, t]) => [name, wire(t)]));
}

/**
 * Affine-model input number `n`: distinct per `n`, multiples of 1/8 in [-2, 2], so every
 * product and sum stays exact in float32 and outputs can be compared bit for bit.
 */
export function affineInput(n: number, rows = 2, features = 4): Record<string, HostTensor> {
  const x = Float32Array.from({ length: rows * features }, (_, i) => (((i * 7 + n * 13) % 33) - 16) / 8);
  return { x: { dtype: 'float32', dims: [rows, features], data: x } };
}

/**
 * Why a finished job does not match `model.expected(inputs)`, or undefined when it matches
 * exactly (state, every output's dtype, dims and each element).
 */
export function mismatch(job: Job__Output, model: TinyModel, inputs: Readonly<Record<string, HostTensor>>): string | undefined {
  if (job.state !== 'JOB_STATE_COMPLETED') return `job ${job.id} is ${job.state}: ${job.error?.code ?? ''} ${job.error?.message ?? ''}`;
  for (const [name, want] of Object.entries(model.expected(inputs))) {
    const got = job.outputs[name];
    if (!got) return `job ${job.id}: no output ${name}`;
    if (got.dtype !== want.dtype || got.dims.map(Number).join(',') !== want.dims.join(',')) {
      return `job ${job.id}: ${name} is ${got.dtype}[${got.dims.join(',')}], expected ${want.dtype}[${want.dims.join(',')}]`;
    }
    const data = typedArrayFromTensor(got);
    for (let i = 0; i < want.data.length; i++) {
      if (data[i] !== want.data[i]) return `job ${job.id}: ${name}[${i}] is ${String(data[i])}, expected ${String(want.data[i])}`;
    }
  }
  return undefined;
}

/** Runs cleanups in reverse order of registration, each at most once, ignoring failures. */
export class Cleanup {
  private readonly steps: Array<() => unknown> = [];

  add(step: () => unknown): void {
    this.steps.push(step);
  }

  async run(): Promise<void> {
    while (this.steps.length > 0) {
      const step = this.steps.pop();
      try {
        await step?.();
      } catch {
        // Cleanup must go on: a step that fails (a process already gone) hides no other.
      }
    }
  }
}

/** What most end-to-end files start with: a Redis, an orchestrator child process and a client. */
export interface ChildOrchestratorSetup {
  redis: RedisServerHandle;
  dataDir: string;
  orchestrator: Awaited<ReturnType<typeof spawnOrchestrator>>;
  control: TestControl;
}

/** Starts them, registering every stop with `cleanup`. */
export async function startChildOrchestrator(cleanup: Cleanup): Promise<ChildOrchestratorSetup> {
  const redis = await startRedis();
  cleanup.add(() => redis.stop());
  const dir = await tempDir('conclave-e2e-orch-');
  cleanup.add(() => dir.remove());
  const orchestrator = await spawnOrchestrator({ redisUrl: redis.url, dataDir: dir.path });
  cleanup.add(() => orchestrator.stop());
  const control = createTestControl(orchestrator);
  cleanup.add(() => control.close());
  return { redis, dataDir: dir.path, orchestrator, control };
}

/** Resolves with `promise`, or rejects once `ms` have passed. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
    }),
  ]);
}
