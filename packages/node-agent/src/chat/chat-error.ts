import { isConclaveError, isErrorCode, lookupError } from '@conclave/common';
import type { JobError__Output } from '@conclave/protocol';

/**
 * A chat request the orchestrator refused: its code, message and retryability exactly as the
 * reply carried them (the code may be one this agent's catalog does not know yet).
 */
export class ChatReplyError extends Error {
  override readonly name = 'ChatReplyError';
  readonly code: string;
  readonly retryable: boolean;

  constructor(error: Pick<JobError__Output, 'code' | 'message' | 'retryable'>) {
    super(error.message || error.code);
    this.code = error.code || 'CHAT-NET-601';
    this.retryable = error.retryable;
  }
}

/** The `error` object of a board socket answer: `{code, message, retryable}`. */
export interface ChatErrorJson {
  code: string;
  message: string;
  retryable: boolean;
}

/** Any failure as the socket answers it; an uncoded one is an internal error (never its stack). */
export function chatErrorJson(err: unknown): ChatErrorJson {
  if (isConclaveError(err)) return { code: err.code, message: err.message, retryable: err.entry.retryable ?? false };
  if (err instanceof ChatReplyError) return { code: err.code, message: err.message, retryable: err.retryable };
  return { code: 'NODE-STATE-707', message: lookupError('NODE-STATE-707').message, retryable: false };
}

/** Whether a failure (local or from the orchestrator) may succeed if tried again. */
export function isRetryable(err: unknown): boolean {
  return chatErrorJson(err).retryable;
}

/** The catalog's recovery for a code, when this agent knows it. */
export function recoveryOf(code: string): string | undefined {
  return isErrorCode(code) ? lookupError(code).recovery : undefined;
}
