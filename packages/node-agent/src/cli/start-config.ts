import { z } from '@conclave/common';
import { isValidAddress } from '@conclave/protocol';
import { NODE_AGENT_DEFAULTS } from '../node-agent-options.js';
import { LOG_SPOOL_MIN_BYTES } from '../logs/log-shipper-options.js';

/**
 * `node-agent start`: flags > CONCLAVE_* env > YAML file > these defaults.
 * docs/configuration.md lists every key; keep the two in step.
 */
export const nodeAgentConfigSchema = z.object({
  /** The orchestrator's gRPC address, HOST:PORT. @default the address in the join string, kept in the data dir */
  orchestrator: z.string().refine(isValidAddress, 'must be HOST:PORT with a port from 1 to 65535 (IPv6 in brackets)').optional(),
  /**
   * A join string from `orchestrator token create`: needed on the first start only. Prefer env
   * CONCLAVE_JOIN or `joinFile`: a flag's value is visible to every user in `ps`.
   */
  join: z.string().min(1).optional(),
  /** A file (mode 0600) holding the join string; read at start. */
  joinFile: z.string().min(1).optional(),
  /** TLS to the orchestrator with the system roots (not needed when the join string carried the certificate digest). */
  tls: z.boolean().default(false),
  /** PEM file of the roots for TLS to the orchestrator: a private CA, or its self-signed certificate. Implies `tls`. */
  tlsCa: z.string().min(1).optional(),
  /** Identity, verified models, outbox and logs; on the board's SSD. */
  dataDir: z.string().min(1),
  /** A human name for `nodes list`; the id comes from the node's key. @default the node id (the agent decides) */
  name: z.string().min(1).optional(),
  /** Jobs run at once. @default the CPU count (the agent decides) */
  slots: z.number().int().min(1).optional(),
  /** Bind address of the local HTTP server: loopback, its health and metrics carry no authentication. */
  httpHost: z.string().min(1).default(NODE_AGENT_DEFAULTS.httpHost),
  /** Local /healthz and /metrics; 0 = any free port, -1 = off. */
  httpPort: z.number().int().min(-1).max(65_535).default(NODE_AGENT_DEFAULTS.httpPort),
  logLevel: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
  /** Records at or above this level go to the orchestrator's fleet logs, whatever `logLevel` is. */
  logShipLevel: z.enum(['error', 'warn', 'info', 'debug']).default(NODE_AGENT_DEFAULTS.logShipLevel),
  /** Bytes of unshipped records kept in `<dataDir>/log-spool/`; past it the oldest go, counted as a gap. */
  logSpoolMaxBytes: z.number().int().min(LOG_SPOOL_MIN_BYTES).default(NODE_AGENT_DEFAULTS.logSpoolMaxBytes),
  /** `auto`: the Hailo chip when detection finds it, else the CPU; `hailo`: refuse to start without it; `cpu`: never the chip. */
  backend: z.enum(['auto', 'cpu', 'hailo']).default(NODE_AGENT_DEFAULTS.backendKind),
  /** The Hailo sidecar's unix socket (mode 0600, the agent's user). @default `<dataDir>/hailo.sock` with `hailoSidecarCommand`, else /run/conclave/hailo.sock */
  hailoSocket: z.string().min(1).optional(),
  /** Runs the sidecar as the agent's child: words split on spaces, `--socket PATH` appended. Absent: attach to systemd's. */
  hailoSidecarCommand: z.string().trim().min(1).optional(),
  /** Detection reads dev/hailo0 and sys/… under this directory. */
  detectionRoot: z.string().min(1).default('/'),
});

export type NodeAgentConfig = z.output<typeof nodeAgentConfigSchema>;
