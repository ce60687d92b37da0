import { cpus } from 'node:os';
import type { LogTap, Logger } from '@conclave/common';
import type { BackendKind, BackendSelectionOptions } from './hailo/backend-selection.js';
import type { InferenceBackend } from './inference-backend.js';
import type { JobRunner } from './job-runner.js';
import { DEFAULT_LOG_SHIP_LEVEL, LOG_SPOOL_MAX_BYTES } from './logs/log-shipper-options.js';

export interface NodeAgentOptions {
  /** Orchestrator `host:port`. @default the address from the join string, kept in the data dir */
  orchestrator?: string;
  /** A join string from `orchestrator token create`: needed once, on the first start. */
  join?: string;
  /**
   * TLS to the orchestrator with the system roots, checking the host name in the address.
   * Not needed when the join string carried the orchestrator's certificate digest (the node then
   * connects with TLS and pins that certificate) or with `tlsCa`. @default false
   */
  tls?: boolean;
  /** PEM file of the roots for TLS to the orchestrator (a private CA, or its self-signed certificate): implies `tls`. */
  tlsCa?: string;
  dataDir: string;
  /** @default the node id */
  name?: string;
  /** Jobs run at once (one worker thread each). @default the number of CPU cores */
  slots?: number;
  /** Local `/healthz` and `/metrics`. @default NODE_AGENT_DEFAULTS.httpPort (7403); 0 picks a free port; -1 disables */
  httpPort?: number;
  /** Loopback: its health and metrics carry no authentication. @default NODE_AGENT_DEFAULTS.httpHost ('127.0.0.1') */
  httpHost?: string;
  /** The agent adds the node id to every line. */
  logger: Logger;
  /**
   * The tap `logger` was made with (and, in the model server, its MODEL logger too): the agent
   * ships what it reads there to the orchestrator. Absent: no records are shipped.
   */
  logTap?: LogTap;
  /**
   * Bytes of unshipped log records kept in `<dataDir>/log-spool/` (while the link is down); past
   * it the oldest are dropped, counted, and shown as a gap. @default NODE_AGENT_DEFAULTS.logSpoolMaxBytes (64 MiB)
   */
  logSpoolMaxBytes?: number;
  /** Extra capabilities advertised to the scheduler, with the handlers for their job kinds. */
  features?: string[];
  extraKinds?: ConstructorParameters<typeof JobRunner>[0]['extraKinds'];
  /** The board's wall clock, as the handshake sees it (tests set a skewed one). @default Date.now */
  now?: () => number;
  /** Replaces the backend `backendKind` would build (tests). */
  backend?: InferenceBackend;
  /**
   * `cpu`: onnxruntime on the board's cores only; `hailo`: the Hailo chip through its sidecar
   * (the agent does not start without one, NODE-STATE-732); `auto`: Hailo when detection finds
   * the chip, else the CPU. @default NODE_AGENT_DEFAULTS.backendKind ('auto')
   */
  backendKind?: BackendKind;
  /** Detection reads `dev/hailo0` and `sys/…` under this directory. @default '/' */
  detectionRoot?: string;
  /** The Hailo sidecar's unix socket. @default `<dataDir>/hailo.sock` with `hailoSidecarCommand`, else `/run/conclave/hailo.sock` */
  hailoSocket?: string;
  /** Command that runs the sidecar as the agent's child (`--socket PATH` appended); absent: attach to the socket of systemd's unit. */
  hailoSidecarCommand?: string[];
  /** Extra environment for the sidecar child. */
  hailoSidecarEnv?: Record<string, string>;
  /** Periods and thresholds of the Hailo backend's fallback (tests shorten them). */
  hailo?: BackendSelectionOptions['hailo'];
  /**
   * false: runs no models (the model server, which serves only its `features`): no backend is
   * created, none is advertised, and an ONNX job that arrives anyway fails with NODE-JOB-803.
   * @default true
   */
  inference?: boolean;
}

/** The knobs with a fixed default; the CLI's schema (cli/start-config.ts) takes them from here. */
export const NODE_AGENT_DEFAULTS = Object.freeze({
  httpPort: 7403,
  httpHost: '127.0.0.1',
  inference: true,
  backendKind: 'auto' as BackendKind,
  /** The level of the tap the CLI makes its logger with (the agent takes the tap, not the level). */
  logShipLevel: DEFAULT_LOG_SHIP_LEVEL,
  logSpoolMaxBytes: LOG_SPOOL_MAX_BYTES,
});

/** Options with every default the agent can decide before it knows its node id. */
export interface ResolvedNodeAgentOptions
  extends Omit<NodeAgentOptions, 'httpPort' | 'httpHost' | 'slots' | 'features' | 'inference' | 'logSpoolMaxBytes' | 'backendKind'> {
  backendKind: BackendKind;
  httpPort: number;
  httpHost: string;
  slots: number;
  features: string[];
  inference: boolean;
  logSpoolMaxBytes: number;
}

export function resolveNodeAgentOptions(options: NodeAgentOptions): ResolvedNodeAgentOptions {
  return {
    ...options,
    httpPort: options.httpPort ?? NODE_AGENT_DEFAULTS.httpPort,
    httpHost: options.httpHost ?? NODE_AGENT_DEFAULTS.httpHost,
    // One worker thread per slot: as many as the board has cores.
    slots: options.slots ?? Math.max(1, cpus().length),
    features: options.features ?? [],
    inference: options.inference ?? NODE_AGENT_DEFAULTS.inference,
    backendKind: options.backendKind ?? NODE_AGENT_DEFAULTS.backendKind,
    logSpoolMaxBytes: options.logSpoolMaxBytes ?? NODE_AGENT_DEFAULTS.logSpoolMaxBytes,
  };
}
