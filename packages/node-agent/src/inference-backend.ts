import { ConclaveError } from '@conclave/common';
import {
  checkInputs, type AcceleratorInfo, type HailoManifest__Output, type ModelArtifact__Output, type ModelBackendStatus,
  type TensorSpec, type WireTensor,
} from '@conclave/protocol';

/** Which backend runs a model: onnxruntime on the CPU, or the Hailo sidecar. */
export type BackendName = 'cpu' | 'hailo';

/** A verified model file and its declared signature. */
export interface BackendModel {
  /** The model's digest, which is also its identity on every node. */
  readonly sha256: string;
  /** The `.onnx` file, loaded by path (external data files sit beside it). */
  readonly path: string;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** The bundle's other files (HEFs, pre/post parts), fetched only by a backend that can use them. */
  readonly artifacts?: readonly ModelArtifact__Output[];
  readonly hailo?: HailoManifest__Output | null;
}

export interface RunOptions {
  /** Aborts the run: a queued job never starts, a running one is stopped. */
  signal?: AbortSignal;
  /** Deadline for the run, queue time included; none when absent. */
  timeoutMs?: number;
}

export interface RunResult {
  readonly outputs: Record<string, WireTensor>;
  /** Time inside `session.run`, excluding queueing and transfer. */
  readonly runMs: number;
}

/**
 * Runs models for the agent. The native runtime sits behind this interface so that the
 * agent (and its tests) do not care whether a model runs on the CPU or on a Hailo chip.
 */
export interface InferenceBackend {
  readonly name: BackendName;
  /** Makes a model runnable; rejects with a NODE-LOAD error when the runtime refuses it. Idempotent. */
  load(model: BackendModel): Promise<void>;
  /**
   * Runs a loaded model. Inputs are checked against the declared signature before
   * anything runs (NODE-REQ-201).
   */
  run(sha256: string, inputs: Record<string, WireTensor>, options?: RunOptions): Promise<RunResult>;
  /** Releases a model's sessions; unknown models are ignored. */
  unload(sha256: string): Promise<void>;
  /** Digests of the loaded models. */
  loadedModels(): string[];
  /** Fails queued and running jobs and releases every runtime resource. */
  dispose(): Promise<void>;
  /** Where each loaded model really runs, and how it fares: a backend that routes between devices says it. */
  modelBackends?(): ModelBackendStatus[];
  /** The accelerator behind the backend, now (absent for the CPU). */
  accelerator?(): AcceleratorInfo | undefined;
  /** Called when a model moves between devices, so that the orchestrator hears it before the next heartbeat. */
  onRouteChange?(listener: () => void): void;
}

/**
 * Rejects inputs that do not fit `specs` with NODE-REQ-201, whose message names the
 * expected signature. Every backend calls this before queueing a job.
 */
export function assertInputsMatch(sha256: string, specs: readonly TensorSpec[], inputs: Record<string, WireTensor>): void {
  const problem = checkInputs(specs, inputs);
  if (problem !== undefined) {
    throw new ConclaveError('NODE-REQ-201', { detail: problem, data: { model: sha256 } });
  }
}
