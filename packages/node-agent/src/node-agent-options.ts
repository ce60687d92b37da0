import { cpus } from 'node:os';
import type { Logger } from '@conclave/common';
import type { InferenceBackend } from './inference-backend.js';
import type { JobRunner } from './job-runner.js';

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
  /** Extra capabilities advertised to the scheduler, with the handlers for their job kinds. */
  features?: string[];
  extraKinds?: ConstructorParameters<typeof JobRunner>[0]['extraKinds'];
  /** The board's wall clock, as the handshake sees it (tests set a skewed one). @default Date.now */
  now?: () => number;
  /** Replaces the CPU backend (tests, or the Hailo selector). */
  backend?: InferenceBackend;
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
});

/** Options with every default the agent can decide before it knows its node id. */
export interface ResolvedNodeAgentOptions
  extends Omit<NodeAgentOptions, 'httpPort' | 'httpHost' | 'slots' | 'features' | 'inference'> {
  httpPort: number;
  httpHost: string;
  slots: number;
  features: string[];
  inference: boolean;
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
  };
}
