export { startOrchestrator, ORCHESTRATOR_VERSION } from './orchestrator.js';
export type { OrchestratorHandle, OrchestratorOptions } from './orchestrator.js';
export { pickNode } from './scheduling/scheduler.js';
export type { JobNeeds, NodeSnapshot, NodeState } from './scheduling/scheduler.js';
export { redisKeys, KEY_PREFIX } from './redis-keys.js';
export { ORCHESTRATOR_MAIN, orchestratorStartArgv } from './launch.js';
export type { OrchestratorStartArgs } from './launch.js';
export { controlCallsFromClient, ControlCallError } from './cli/control-calls.js';
export type { ControlCalls, ControlCallsOptions } from './cli/control-calls.js';
