import { describe, expect, it } from 'vitest';
import { isConclaveError } from '@conclave/common';
import { ControlCallError, fromServiceError } from './control-calls.js';
import { describeFailure } from './cli-failure.js';

function serviceError(code: number, details: string): Error {
  return Object.assign(new Error(`${code} ${details}`), { code, details });
}

describe('fromServiceError', () => {
  it('takes the catalog code from the start of the status details', () => {
    const err = fromServiceError(serviceError(5, 'ORCH-REQ-202 unknown model "foo"; known models: a, b'), '127.0.0.1:7400');
    expect(err).toBeInstanceOf(ControlCallError);
    expect((err as ControlCallError).code).toBe('ORCH-REQ-202');
    expect((err as ControlCallError).status).toBe('NOT_FOUND');
    expect(describeFailure(err)).toEqual({ line: 'ORCH-REQ-202 unknown model "foo"; known models: a, b', exitCode: 1 });
  });

  it('keeps a coded UNAVAILABLE from the server as the server said it', () => {
    const err = fromServiceError(serviceError(14, 'ORCH-SCHED-851 no node can run the job'), 'h:1');
    expect(describeFailure(err).line).toBe('ORCH-SCHED-851 no node can run the job');
  });

  it('turns an uncoded UNAVAILABLE into ORCH-NET-650 naming the address', () => {
    const err = fromServiceError(serviceError(14, 'No connection established'), '10.0.0.9:7400');
    expect(isConclaveError(err) && err.code).toBe('ORCH-NET-650');
    const { line, exitCode } = describeFailure(err);
    expect(line).toMatch(/^ORCH-NET-650 orchestrator unreachable: 10\.0\.0\.9:7400: No connection established — /);
    expect(exitCode).toBe(1);
  });

  it('turns a deadline into ORCH-NET-650 with the deadline', () => {
    const err = fromServiceError(serviceError(4, 'Deadline exceeded'), 'h:7400', 5000);
    expect(err.message).toContain('no answer within 5000 ms');
  });

  it('prints the status name for an uncoded server error', () => {
    expect(describeFailure(fromServiceError(serviceError(13, 'boom'), 'h:1')).line).toBe('INTERNAL boom');
  });
});
