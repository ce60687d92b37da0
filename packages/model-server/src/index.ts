export { MODEL_SERVER_VERSION } from './version.js';
export { startModelServer, type ModelServerHandle, type ModelGenerateRequest, type ModelGenerateResult } from './model-server.js';
export {
  DEFAULT_PORT,
  LOAD_OVERHEAD,
  resolveModelServerOptions,
  type MemoryOptions,
  type ModelServerOptions,
  type ResolvedModelServerOptions,
} from './model-server-options.js';
export { WorkerEngine, checkMemoryForLoad, type Engine, type EngineState, type GenerateOptions, type GenerationResult, type WorkerEngineOptions } from './engine.js';
export { EngineRegistry, type EngineRegistryHooks } from './engine-registry.js';
export type { EngineRequest, ModelInfo } from './engine-protocol.js';
export { DecoderSession, type DecoderSignature } from './decoder-session.js';
export { GenerationLoop, type GenerationParams, type GenerationOutput, type FinishReason } from './generation-loop.js';
export { resolveGeneration } from './generation-defaults.js';
export { readModelConfig, type ModelConfig } from './model-config.js';
export { TextCodec, type ChatMessage } from './text-codec.js';
export { inspectModelDir, modelDirFingerprint, type ModelFiles } from './model-files.js';
export { listModelsDir, type ModelsDirEntry } from './models-dir.js';
export { SystemMemoryProbe, FixedMemoryProbe, type MemoryProbe, type MemorySample } from './memory-probe.js';
export { MemoryGuard, type MemoryLevel } from './memory-guard.js';
export { ApiKeys } from './api-keys.js';
export { ModelServerMetrics } from './metrics.js';
export { DEMO_MODEL_DIR, DEMO_MODEL_ID, DEMO_NO_CACHE_MODEL_DIR, DEMO_EXTERNAL_DATA_MODEL_DIR } from './demo-model.js';
export { joinFleet, TEXT_GENERATION_FEATURE } from './fleet-member.js';
export type { FleetMemberOptions } from './fleet-member.js';
export { MODEL_SERVER_JOIN_ENV, MODEL_SERVER_MAIN, modelServerJoinEnv, modelServerStartArgv } from './launch.js';
export type { ModelServerStartArgs } from './launch.js';
