import { describe, expect, it } from 'vitest';
import { ConclaveError } from '@conclave/common';
import type { NodeInfo } from '@conclave/protocol';
import type { StoredLogEntry } from '../logs/log-entry.js';
import type { DashboardJob } from './dashboard-sources.js';
import { chatFragment, jobsFragment, logsFragment, nodesFragment, panelErrorOf, queueFragment, unavailable } from './fragments.js';

const EVIL = '<script>alert(1)</script>';
const ESCAPED = '&lt;script&gt;alert(1)&lt;/script&gt;';
const NOW = Date.UTC(2026, 0, 2, 3, 4, 5);

const node = (over: Partial<NodeInfo> = {}): NodeInfo => ({
  id: 'a1b2c3d4e5f6a7b8', name: 'alpha', state: 'connected', status: 'accepted', slots: 4, running: 1, backends: ['cpu', 'hailo'],
  backendActive: 'cpu', loadedModels: ['affine'], lastSeenMs: NOW - 1_500, cpuCores: 4, memoryBytes: 8 * 2 ** 30,
  memoryUsedBytes: 2 * 2 ** 30, clockOffsetMs: 3, ...over,
});

const job = (over: Partial<DashboardJob>): DashboardJob => ({
  id: 'j1', state: 'completed', kind: 'infer', model: 'affine', node: 'a1b2c3d4e5f6a7b8', attempts: 1, createdAtMs: NOW, finishedAtMs: NOW, runMs: 12, ...over,
});

const entry = (over: Partial<StoredLogEntry>): StoredLogEntry => ({
  id: '1-0', timeMs: NOW, level: 'info', prefix: 'NODE', section: 'NET', message: 'connected', fields: {}, ...over,
});

describe('dashboard fragments', () => {
  it('shows a node with its state, backend, models, load and telemetry', () => {
    const text = nodesFragment([node()], NOW).text;
    expect(text).toContain('<span class="name">alpha</span>');
    expect(text).toContain('<span class="state state-connected">connected</span>');
    expect(text).toContain('cpu<br><small>cpu, hailo</small>');
    expect(text).toContain('<td>affine</td>');
    expect(text).toContain('<meter min="0" max="4" value="1"></meter> 1/4');
    expect(text).toContain('2.0 GiB / 8.0 GiB');
    expect(text).toContain('1 s ago');
    expect(text).toContain('3 ms');
  });

  it('renders a node name, id and models given as markup as text', () => {
    const text = nodesFragment([node({ id: `"><img src=x onerror=alert(1)>`, name: EVIL, loadedModels: [EVIL], status: EVIL, backendActive: EVIL })], NOW).text;
    expect(text).not.toContain('<script>');
    expect(text).not.toContain('<img');
    expect(text).toContain(`<span class="name">${ESCAPED}</span>`);
    expect(text).toContain('data-node-id="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"');
  });

  it('renders chat texts, senders and room names as text', () => {
    const text = chatFragment([{
      name: 'ops', headSeq: 2, members: 3,
      messages: [{ seq: 2, sender: 'n1', senderName: EVIL, kind: 'text', text: `hello ${EVIL}`, atMs: NOW }],
    }]).text;
    expect(text).not.toContain('<script>');
    expect(text).toContain(`<span class="sender">${ESCAPED}</span>`);
    expect(text).toContain(`<span class="text">hello ${ESCAPED}</span>`);
    expect(text).toContain('#ops <small>3 members, seq 2</small>');
  });

  it('renders log messages, fields, node names and job ids as text, newest first', () => {
    const text = logsFragment([
      entry({ id: '1-0', message: 'first' }),
      entry({ id: '2-0', level: 'warn', code: 'NODE-NET-601', message: EVIL, node: 'n1', nodeName: EVIL, jobId: EVIL, fields: { err: EVIL, n: 2 } }),
    ], { kind: 'live' }).text;
    expect(text).not.toContain('<script>');
    expect(text).toContain(`<span class="message">${ESCAPED}</span>`);
    expect(text).toContain(`<span class="fields">err=${ESCAPED} n=2</span>`);
    expect(text).toContain('<span class="tag">NODE-NET-601</span>');
    expect(text.indexOf('data-log-id="2-0"')).toBeLessThan(text.indexOf('data-log-id="1-0"'));
    expect(text).toContain('<time>03:04:05.000</time>');
  });

  it('says when the tail has no store, no records, or failed, and shows gaps', () => {
    expect(logsFragment([], { kind: 'not-stored' }).text).toContain('keeps no fleet log store');
    expect(logsFragment([], { kind: 'live' }).text).toContain('No matching log records yet.');
    expect(logsFragment([], { kind: 'error', error: { message: EVIL } }).text).toContain(`log tail interrupted, retrying: ${ESCAPED}`);
    expect(logsFragment([entry({ gap: true, fields: { count: 7, reason: 'trimmed' } })], { kind: 'live' }).text).toContain('7 records missing (trimmed)');
  });

  it('splits jobs into running, failed with their codes, and finished', () => {
    const text = jobsFragment([
      job({ id: 'run1', state: 'running' }),
      job({ id: 'bad1', state: 'failed', error: { code: 'NODE-REQ-201', message: EVIL } }),
      job({ id: 'ok1', state: 'completed' }),
    ], [node()]).text;
    const section = (id: string) => text.slice(text.indexOf(`id="${id}"`), text.indexOf('</table>', text.indexOf(`id="${id}"`)));
    expect(section('jobs-active')).toContain('data-job-id="run1"');
    expect(section('jobs-failed')).toContain(`<code class="code">NODE-REQ-201</code> ${ESCAPED}`);
    expect(section('jobs-finished')).toContain('data-job-id="ok1" data-job-state="completed"');
    expect(section('jobs-finished')).toContain('<td>alpha</td>');
    expect(text).not.toContain('<script>');
  });

  it('shows the queue counts and escapes an unavailable source’s reason', () => {
    expect(queueFragment({ waiting: 3, active: 1 }).text).toContain('data-queue-state="waiting"><span class="count">3</span>');
    expect(unavailable('chat', { message: EVIL }).text).toBe(`<p class="unavailable">chat unavailable: ${ESCAPED}</p>`);
  });

  it('shows an error with its catalog code, and a refused filter without any records', () => {
    const refused = new ConclaveError('ORCH-REQ-260', { detail: JSON.stringify(EVIL) });
    expect(panelErrorOf(refused)).toEqual({ code: 'ORCH-REQ-260', message: `unknown node in a log filter: ${JSON.stringify(EVIL)}` });
    expect(panelErrorOf(new Error('plain'))).toEqual({ message: 'plain' });
    const text = logsFragment([entry({})], { kind: 'refused', error: panelErrorOf(refused) }).text;
    expect(text).toBe('<p class="unavailable" role="alert">No live tail for this filter: <code class="code">ORCH-REQ-260</code> unknown node in a log filter: &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;</p>');
    expect(logsFragment([], { kind: 'error', error: { code: 'ORCH-REQ-263', message: 'too many log followers' } }).text)
      .toContain('log tail interrupted, retrying: <code class="code">ORCH-REQ-263</code> too many log followers');
    expect(unavailable('nodes', { code: 'ORCH-STATE-710', message: 'down' }).text).toContain('nodes unavailable: <code class="code">ORCH-STATE-710</code> down');
  });
});
