import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConclaveError, httpStatusOf, toConclaveError, type Logger } from '@conclave/common';

/** OpenAI's error `type` for an HTTP status. */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'service_unavailable_error';
  if (status === 504) return 'timeout_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** The OpenAI error shape for any error; unknown errors become MODEL-RESP-301 without their internals. */
export function errorBody(err: ConclaveError): { status: number; body: { error: { message: string; type: string; code: string; param: string | null } } } {
  const status = httpStatusOf(err.entry.status);
  const field = err.data['field'];
  return {
    status,
    body: { error: { message: err.message, type: errorType(status), code: err.code, param: typeof field === 'string' ? field : null } },
  };
}

export function asConclaveError(err: unknown): ConclaveError {
  return toConclaveError(err, 'MODEL-RESP-301');
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * Answers with the error and logs it under its code: a client's mistake (4xx)
 * at warn, the server's own failure at error.
 */
export function sendError(res: ServerResponse, raw: unknown, log: Logger, retryAfterSeconds: number): number {
  const err = asConclaveError(raw);
  const { status, body } = errorBody(err);
  const headers: Record<string, string> = {};
  if ((status === 503 || status === 429) && err.entry.retryable) headers['retry-after'] = String(retryAfterSeconds);
  log.failure(err, { status }, status >= 500 && status !== 503 ? 'error' : 'warn');
  if (res.headersSent) {
    // Mid-stream: the status line is gone, so the error travels as an SSE event.
    if (!res.writableEnded) res.end(`data: ${JSON.stringify(body)}\n\n`);
  } else {
    sendJson(res, status, body, headers);
  }
  return status;
}

/** Reads a JSON body up to `limit` bytes; MODEL-REQ-207 beyond, MODEL-REQ-202 if it does not parse. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new ConclaveError('MODEL-REQ-207', { detail: `limit is ${limit} bytes` });
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new ConclaveError('MODEL-REQ-202', { detail: cause instanceof Error ? cause.message : 'unparseable', cause });
  }
}

/** A server-sent events writer: `data: <json>` events and the final `data: [DONE]`. */
export class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  open(headers: Record<string, string>): void {
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...headers,
    });
    this.res.flushHeaders();
  }

  send(data: unknown): void {
    if (!this.res.writableEnded) this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  done(): void {
    if (!this.res.writableEnded) this.res.end('data: [DONE]\n\n');
  }
}
