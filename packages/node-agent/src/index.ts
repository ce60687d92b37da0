export { startNodeAgent } from './node-agent.js';
export { AGENT_VERSION } from './version.js';
export type { NodeAgentHandle, NodeAgentOptions } from './node-agent.js';
export { NODE_AGENT_DEFAULTS, resolveNodeAgentOptions, type ResolvedNodeAgentOptions } from './node-agent-options.js';
export { CpuBackend } from './cpu-backend.js';
export type { CpuBackendOptions } from './cpu-backend.js';
export { assertInputsMatch } from './inference-backend.js';
export type { BackendModel, BackendName, InferenceBackend, RunOptions, RunResult } from './inference-backend.js';
export { ModelStore } from './model-store.js';
export { JobRunner } from './job-runner.js';
export { NODE_AGENT_JOIN_ENV, NODE_AGENT_MAIN, nodeAgentJoinEnv, nodeAgentStartArgv } from './launch.js';
export type { NodeAgentStartArgs } from './launch.js';
export { FIRST_CONNECTION_POLL_MS, onFirstConnection } from './first-connection.js';
export { ORCHESTRATOR_CERT_FILE } from './orchestrator-tls.js';
export { RECONNECT_BASE_MS, RECONNECT_CAP_MS } from './orchestrator-link.js';
// For benchmarks and tests that drive a bare session (no job runner, no chat client).
export { OrchestratorLink } from './orchestrator-link.js';
export type { OrchestratorLinkOptions, OrchestratorMessageHandler } from './orchestrator-link.js';
export { NodeCredentials } from './node-credentials.js';
// A board's programs (and tests) reach the chat through the agent's socket.
export { CHAT_SOCKET_FILE } from './chat/chat-socket.js';
export { ChatSocketClient, type SocketAnswer } from './chat/chat-socket-client.js';
export { ChatReplyError, type ChatErrorJson } from './chat/chat-error.js';
export { CHAT_ACK_DELAY_MS } from './chat/chat-client.js';
// The Hailo backend and its sidecar, for the node's own wiring, benchmarks and tests.
export { HailoBackend, type HailoBackendOptions } from './hailo/hailo-backend.js';
export { SidecarClient, SidecarSupervisor, detectHailo, readBoardHealth } from './hailo/index.js';
export type { SidecarSupervisorOptions, SidecarTensorData, HailoDetection } from './hailo/index.js';
