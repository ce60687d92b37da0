export { startRedis, type StartRedisOptions } from './redis.js';
export type { RedisServerHandle } from '@conclave/common';
export * from './onnx/index.js';
export * from './text-models/index.js';
export { spawnNode } from './child-process.js';
export type { ChildHandle } from './child-process.js';
export {
  spawnNodeAgent, spawnOrchestrator, startTestNode, startTestOrchestrator, tempDir,
} from './fleet.js';
export type { JoinSource, TestOrchestratorOptions } from './fleet.js';
export { createTestControl } from './control.js';
export type { ControlTarget, TestControl } from './control.js';
export { waitUntil } from './wait-until.js';
export * from './tokenizers/index.js';
export { bundleBackendModel, bundleOnDisk, hailoBundle, type BundleOnDisk, type HailoBundle, type HailoBundleOptions, type HailoBundlePaths, type HailoManifestJson, type BundlePart } from './hailo/hailo-bundle.js';
export { writeFakeDeviceTree, type FakeDeviceTreeOptions } from './hailo/fake-device-tree.js';
export * from './hailo/fake-hailort.js';
