export {
  DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES, FrameReader, decodeRequest, decodeResponse, encodeRequestFrame,
  encodeResponseFrame,
} from './sidecar-frames.js';
export {
  DEFAULT_SIDECAR_CONNECT_TIMEOUT_MS, DEFAULT_SIDECAR_DEADLINE_GRACE_MS, DEFAULT_SIDECAR_REQUEST_TIMEOUT_MS,
  SidecarClient, resolveSidecarClientOptions, sidecarErrorToConclave,
} from './sidecar-client.js';
export type {
  ResolvedSidecarClientOptions, SidecarClientOptions, SidecarInferOptions, SidecarInferResult, SidecarLoadOptions,
  SidecarTensorData,
} from './sidecar-client.js';
export {
  DEFAULT_SIDECAR_READY_TIMEOUT_MS, DEFAULT_SIDECAR_STABLE_AFTER_MS, DEFAULT_SIDECAR_STOP_GRACE_MS, SIDECAR_READY_LINE,
  SidecarSupervisor, parseSidecarLogLine, resolveSidecarSupervisorOptions,
} from './sidecar-supervisor.js';
export type {
  ResolvedSidecarSupervisorOptions, SidecarChange, SidecarListener, SidecarState, SidecarSupervisorOptions,
} from './sidecar-supervisor.js';
export {
  HAILO_DEVICE_PATH, HAILO_PCI_VENDOR, MIN_PCIE_GEN, THROTTLED_CANDIDATES, THROTTLED_FLAGS, detectHailo,
  parseThrottled, pcieGenOf, readBoardHealth,
} from './hailo-detection.js';
export type {
  BoardHealth, DetectionOptions, HailoDetection, PcieLink, ThrottledState,
} from './hailo-detection.js';
