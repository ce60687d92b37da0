export { startOrchestrator, ORCHESTRATOR_VERSION } from './orchestrator.js';
export type { OrchestratorHandle, OrchestratorOptions } from './orchestrator.js';
export { pickNode } from './scheduling/scheduler.js';
export type { JobNeeds, NodeSnapshot, NodeState } from './scheduling/scheduler.js';
export { redisKeys, KEY_PREFIX } from './redis-keys.js';
