// `orchestrator logs` against a scripted TailLogs: the query the flags make, both output shapes,
// bad flags refused before any call, and a follow that resumes after its last entry.
import { describe, expect, it } from 'vitest';
import { ConclaveError } from '@conclave/common';
import type { LogEntries__Output, LogEntry__Output, LogQuery } from '@conclave/protocol';
import { StringOut } from './cli-io.js';
import { ControlCallError, type ControlCalls, type RoomFollow } from './control-calls.js';
import { formatLogEntry, logEntryJson, logQueryOf, logsCommand } from './logs-command.js';

const AT_MS = Date.UTC(2026, 11, 2, 10, 0, 0);

function entry(id: string, overrides: Partial<LogEntry__Output> = {}): LogEntry__Output {
  return {
    id, timeMs: AT_MS, level: 'info', prefix: 'NODE', section: 'JOB', code: '', message: 'job completed', node: 'n1', nodeName: 'pi-01',
    jobId: 'j1', fieldsJson: JSON.stringify({ attempt: 1, runMs: 3.5 }), gap: false, ...overrides,
  };
}

/** TailLogs scripted per call: each call's messages, then its end (or an error). */
function fakeCalls(script: Array<{ messages: LogEntries__Output[]; error?: Error }>): { calls: ControlCalls; queries: LogQuery[] } {
  const queries: LogQuery[] = [];
  const calls = {
    address: '127.0.0.1:7400',
    tailLogs(query: LogQuery, onEntries: (entries: LogEntries__Output) => void): RoomFollow {
      queries.push(query);
      const step = script.shift() ?? { messages: [] };
      for (const m of step.messages) onEntries(m);
      return { done: step.error ? Promise.reject(step.error) : Promise.resolve(), cancel: () => undefined };
    },
  } as unknown as ControlCalls;
  return { calls, queries };
}

const io = () => ({ stdout: new StringOut(), stderr: new StringOut() });

describe('orchestrator logs', () => {
  it('makes the query from the flags, with the prefixes and names normalised and --since as a time', () => {
    const now = AT_MS;
    expect(logQueryOf({ prefixes: ['NODE-', 'chat'], section: 'load', level: 'WARN', since: '10m', job: 'j1', node: 'pi-01', now: () => now })).toEqual({
      follow: false, prefixes: ['NODE', 'CHAT'], section: 'LOAD', level: 'warn', sinceMs: now - 600_000, jobId: 'j1', node: 'pi-01',
    });
    expect(logQueryOf({ since: '2026-12-01T10:00:00Z' }).sinceMs).toBe(Date.UTC(2026, 11, 1, 10));
  });

  it.each([
    [{ since: 'yesterday' }, 'since'],
    [{ since: '10' }, 'since'],
    [{ prefixes: ['KERNEL-'] }, 'prefix'],
    [{ section: 'DISK' }, 'section'],
    [{ level: 'loud' }, 'level'],
  ])('refuses %o with ORCH-REQ-261 before any call', async (flags, what) => {
    const { calls, queries } = fakeCalls([]);
    const err = await logsCommand(calls, io(), flags).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConclaveError);
    expect((err as ConclaveError).code).toBe('ORCH-REQ-261');
    expect((err as ConclaveError).message).toContain(what);
    expect(queries).toEqual([]);
  });

  it('prints human lines as the process wrote them, with the node by name, and gaps visibly', () => {
    expect(formatLogEntry(entry('1-0'))).toBe('2026-12-02T10:00:00.000Z INFO  NODE-JOB job completed node=pi-01 jobId=j1 attempt=1 runMs=3.5');
    const gap = entry('2-0', {
      level: 'warn', prefix: 'ORCH', section: 'STATE', code: 'ORCH-STATE-722', message: 'log records lost on a node', jobId: '',
      fieldsJson: JSON.stringify({ count: 40, reason: 'spool-full' }), gap: true,
    });
    expect(formatLogEntry(gap)).toBe('2026-12-02T10:00:00.000Z WARN  ORCH-STATE-722 log records lost on a node node=pi-01 count=40 reason=spool-full gap=true');
  });

  it('prints one JSON object a line with the fixed keys first, and fields never shadowing them', () => {
    const json = logEntryJson(entry('1-0', { code: 'NODE-LOAD-104', fieldsJson: JSON.stringify({ message: 'inner', attempt: 2 }) }));
    expect(json).toEqual({
      time: '2026-12-02T10:00:00.000Z', level: 'info', prefix: 'NODE', section: 'JOB', code: 'NODE-LOAD-104', message: 'job completed',
      node: 'n1', nodeName: 'pi-01', jobId: 'j1', meta_message: 'inner', attempt: 2, id: '1-0',
    });
  });

  it('follows again after the last entry printed when the orchestrator goes away: nothing twice', async () => {
    const away = new ControlCallError('UNAVAILABLE', 'ORCH-NET-610', 'the orchestrator is shutting down');
    const { calls, queries } = fakeCalls([
      { messages: [{ entries: [entry('1-0'), entry('2-0')], jobEnded: false }], error: away },
      { messages: [{ entries: [entry('3-0')], jobEnded: true }] },
    ]);
    const out = io();
    expect(await logsCommand(calls, out, { follow: true, job: 'j1', json: true, limit: 50 })).toBe(0);
    expect(out.stdout.text.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['1-0', '2-0', '3-0']);
    expect(queries[1]).toMatchObject({ afterId: '2-0', jobId: 'j1', follow: true, limit: 0, sinceMs: 0 });
    expect(out.stderr.text).toMatch(/following again after 2-0/);
    expect(out.stderr.text).toMatch(/job j1 has ended/);
  });

  it('ends with the error when not following, or for an error a retry cannot fix', async () => {
    const notFound = new ControlCallError('NOT_FOUND', 'ORCH-REQ-260', 'unknown node in a log filter');
    const { calls, queries } = fakeCalls([{ messages: [], error: notFound }]);
    await expect(logsCommand(calls, io(), { follow: true, node: 'pi-99' })).rejects.toBe(notFound);
    expect(queries).toHaveLength(1);
  });
});
