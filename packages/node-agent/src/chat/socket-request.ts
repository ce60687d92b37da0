import { ConclaveError, z } from '@conclave/common';

const room = z.string();
const seq = z.number().int().nonnegative();

/** The board socket's requests, one JSON object a line (docs/cli.md, "The board socket"). */
const REQUESTS = {
  post: z.strictObject({
    op: z.literal('post'), room, text: z.string(), clientMsgId: z.string().optional(), resource: z.string().optional(), fence: seq.optional(),
  }),
  tail: z.strictObject({ op: z.literal('tail'), room, from: seq.optional(), follow: z.boolean().optional() }),
  claim: z.strictObject({ op: z.literal('claim'), room, resource: z.string(), ttlMs: z.number().int().positive() }),
  release: z.strictObject({ op: z.literal('release'), room, resource: z.string(), fence: seq }),
  context: z.strictObject({ op: z.literal('context'), room }),
  join: z.strictObject({ op: z.literal('join'), room }),
  leave: z.strictObject({ op: z.literal('leave'), room }),
  rooms: z.strictObject({ op: z.literal('rooms') }),
} as const;

export type SocketOp = keyof typeof REQUESTS;
export type SocketRequest = { [K in SocketOp]: z.infer<(typeof REQUESTS)[K]> }[SocketOp];

export const SOCKET_OPS = Object.keys(REQUESTS) as SocketOp[];

/** A line read: the request, or why it is not one. `id` is echoed in the answer either way (null when absent). */
export type ParsedLine = { id: unknown; request: SocketRequest } | { id: unknown; error: ConclaveError };

/** Parses one line; every way it can be malformed is CHAT-REQ-204 with what was expected. */
export function parseSocketLine(line: string): ParsedLine {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    return { id: null, error: malformed(`not JSON (${(err as Error).message})`) };
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return { id: null, error: malformed('a request is a JSON object {"id", "op", …}') };
  const { id = null, ...rest } = value as Record<string, unknown>;
  const op = rest['op'];
  if (typeof op !== 'string' || !Object.hasOwn(REQUESTS, op)) {
    return { id, error: malformed(`${op === undefined ? 'no "op"' : `unknown op ${JSON.stringify(op)}`}; one of ${SOCKET_OPS.join(', ')}`) };
  }
  const parsed = REQUESTS[op as SocketOp].safeParse(rest);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length > 0 ? `${i.path.join('.')}: ` : ''}${i.message}`);
    return { id, error: malformed(`${op}: ${issues.join('; ')}`) };
  }
  return { id, request: parsed.data };
}

export function malformed(detail: string): ConclaveError {
  return new ConclaveError('CHAT-REQ-204', { detail });
}
