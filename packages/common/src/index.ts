// Everything the narrow `@conclave/common/core` entry holds, then what needs winston, zod or the file system.
export * from './core.js';
export {
  REDACTED,
  SECRET_KEY_PATTERN,
  errorCodeOf,
  formatConsoleLine,
  formatJsonLine,
  isSecretKey,
  lineTag,
  maskUrlCredentials,
  redact,
  type LogRecord,
  type SerializedError,
} from './log-format.js';
export {
  DEFAULT_LOG_FILE_MAX_FILES,
  DEFAULT_LOG_FILE_MAX_SIZE,
  DEFAULT_LOG_LEVEL,
  UNEXPECTED_ERROR_MESSAGE,
  captureLogger,
  createLogger,
  nullLogger,
  type CapturedLogger,
  type ClosableLogger,
  type LogFileOptions,
  type LoggerOptions,
} from './winston-logger.js';
export { LOG_TAP_EARLY_LIMIT, LogTap, type LogRecordReader } from './log-tap.js';
export { ERRORS_DOC_PATH, renderErrorsDoc } from './errors/errors-doc.js';
export {
  DEFAULT_ENV_PREFIX,
  describeEnvName,
  loadConfig,
  toCamelKey,
  type ConfigIssue,
  type ConfigSource,
  type LoadConfigOptions,
} from './config.js';
export { z } from 'zod';
export {
  DEFAULT_REDIS_START_TIMEOUT_MS,
  REDIS_FALLBACK_DIRS,
  REDIS_HOST,
  REDIS_STOP_GRACE_MS,
  REDIS_AUTH_CONF_FILE,
  REDIS_SOCKET_FILE,
  REDIS_RESTART_BASE_MS,
  REDIS_RESTART_CAP_MS,
  findFreePort,
  findRedisServer,
  REDIS_GUARDIAN_NAME,
  launchRedis,
  redisGuardianPids,
  sendRedisCommands,
  type FindRedisServerOptions,
  type LaunchRedisOptions,
  type RedisServerHandle,
} from './redis-launcher.js';
export { DATA_DIR_LOCK_FILE, DATA_DIR_LOCK_MALFORMED_GRACE_MS, DATA_DIR_LOCK_REFRESH_INTERVAL_MS, DATA_DIR_LOCK_STALE_AFTER_MS, acquireDataDirLock, whileHoldingDataDir, type DataDirLock, type DataDirLockOptions } from './data-dir-lock.js';
export { percentile, percentileOf, processCpuNanos, threadCpuNanos } from './bench-measure.js';
export { EXIT_CLAIM_HELD, EXIT_FAILURE, EXIT_FORCED, EXIT_OK, EXIT_USAGE } from './exit-codes.js';
export { DURATION_PATTERN, formatDurationMs, parseDurationMs } from './duration.js';
export {
  describeCodedFailure,
  describeStartupFailure,
  describeUsageError,
  oneLine,
  onOutputGone,
  type CliFailure,
} from './cli-failure.js';
export { assertPortFree, listenOrFail, type ListenOptions } from './listen.js';
export { DUPLICATE_SIGNAL_WINDOW_MS, SHUTDOWN_SIGNALS, shutdownRequested, shutdownSignal } from './shutdown-signal.js';
export { parentGone } from './parent-gone.js';
export { isProcessRunning } from './process-state.js';
export {
  READINESS_PREFIX,
  formatReadinessLine,
  parseReadinessLine,
  type Readiness,
  type ReadinessOf,
  type ReadinessRole,
} from './readiness.js';
export { DEFAULT_READY_TIMEOUT_MS, DEFAULT_STOP_GRACE_MS, spawnChild, type SpawnChildOptions, type SpawnedChild } from './spawn-child.js';
export { toCliFlags, type CliFlagValue } from './cli-flags.js';
export { packageVersion } from './package-version.js';
export {
  DEFAULT_CLOSE_TIMEOUT_MS,
  EXIT_GRACE_MS,
  exitWhenIdle,
  runService,
  type RunServiceOptions,
  type RunningService,
  type TextOut,
} from './run-service.js';
