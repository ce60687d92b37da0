import type { ConclaveError } from '@conclave/common/core';
import type { JobError } from './generated/conclave/v1/JobError.js';

/** A coded error as the wire carries it in a job's result, record or model chunk: code, message, status, retryable. */
export function jobErrorOf(err: ConclaveError): JobError {
  return { code: err.code, message: err.message, status: err.entry.status, retryable: err.entry.retryable ?? false };
}
