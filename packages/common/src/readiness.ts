import { z } from 'zod';

/**
 * The start of the one line an executable writes to stdout once it is ready (docs/operations.md,
 * "Readiness"). Logs go to stderr, so the line never mixes into them; a `--json` command never
 * writes it. A parent waits for this line instead of matching log wording, which may change.
 */
export const READINESS_PREFIX = 'CONCLAVE-READY ';

/** A port, or null when that listener is off (`--http-port -1`). */
const optionalPort = z.number().int().min(0).max(65_535).nullable();

/** gRPC and HTTP are listening and Redis has answered: what `/readyz` reports as ready. */
const orchestratorReadiness = z.object({
  role: z.literal('orchestrator'),
  /** `host:port` that nodes and clients on this machine dial. */
  grpc: z.string(),
  /** Of `/healthz`, `/readyz`, `/metrics`. */
  httpPort: optionalPort,
  /** gRPC over TLS (`--tls-cert`). */
  tls: z.boolean(),
  /** `SHA256:…` of the orchestrator key, as join strings pin it. */
  fingerprint: z.string(),
});

/**
 * Started, and its first session with the orchestrator is up (enrolled, approved, registered):
 * it can take jobs. An agent that cannot reach its orchestrator keeps retrying and says nothing
 * here until it does.
 */
const nodeAgentReadiness = z.object({
  role: z.literal('node-agent'),
  node: z.string(),
  /** Of its local `/healthz` and `/metrics`. */
  httpPort: optionalPort,
});

/**
 * Listening, the default model loaded and warmed up (`/health` answers 200), and, when it joined
 * a fleet, its first session up. A default model that cannot load ends the process instead.
 */
const modelServerReadiness = z.object({
  role: z.literal('model-server'),
  /** `http://host:port` of the OpenAI-compatible API. */
  url: z.string(),
  /** The default model's id. */
  model: z.string(),
  /** Its node id in the fleet; null when it serves HTTP without having joined. */
  node: z.string().nullable(),
});

/** `pnpm start`: the orchestrator, every node agent and the model server ready, the demo jobs done. */
const localFleetReadiness = z.object({
  role: z.literal('local-fleet'),
  grpc: z.string(),
  httpPort: optionalPort,
  nodes: z.number().int().min(0),
  /** The model server's URL; null when the fleet runs without it. */
  modelServer: z.string().nullable(),
});

const readinessSchema = z.discriminatedUnion('role', [orchestratorReadiness, nodeAgentReadiness, modelServerReadiness, localFleetReadiness]);

export type Readiness = z.infer<typeof readinessSchema>;
export type ReadinessRole = Readiness['role'];
/** The readiness of one role, e.g. `ReadinessOf<'orchestrator'>`. */
export type ReadinessOf<R extends ReadinessRole> = Extract<Readiness, { role: R }>;

/** The whole line, newline included: the prefix, then the JSON. */
export function formatReadinessLine(readiness: Readiness): string {
  return `${READINESS_PREFIX}${JSON.stringify(readiness)}\n`;
}

/**
 * The readiness a line carries; undefined for any other line. A line with the prefix and
 * anything but a valid readiness after it throws: an executable and its parent disagree.
 */
export function parseReadinessLine(line: string): Readiness | undefined {
  if (!line.startsWith(READINESS_PREFIX)) return undefined;
  const json = line.slice(READINESS_PREFIX.length).trim();
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new Error(`malformed readiness line (not JSON): ${line}`, { cause: err });
  }
  const parsed = readinessSchema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'line'}: ${i.message}`).join('; ');
    throw new Error(`malformed readiness line (${issues}): ${line}`);
  }
  return parsed.data;
}
