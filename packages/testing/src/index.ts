export { startRedis, type StartRedisOptions } from './redis.js';
export type { RedisServerHandle } from '@conclave/common';
export * from './onnx/index.js';
