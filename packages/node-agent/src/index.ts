export { startNodeAgent, AGENT_VERSION } from './node-agent.js';
export type { NodeAgentHandle, NodeAgentOptions } from './node-agent.js';
export { CpuBackend } from './cpu-backend.js';
export type { CpuBackendOptions } from './cpu-backend.js';
export { assertInputsMatch } from './inference-backend.js';
export type { BackendModel, BackendName, InferenceBackend, RunOptions, RunResult } from './inference-backend.js';
export { ModelStore } from './model-store.js';
export { JobRunner } from './job-runner.js';
