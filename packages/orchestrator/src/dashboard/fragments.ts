import { isConclaveError } from '@conclave/common';
import type { NodeInfo } from '@conclave/protocol';
import type { StoredLogEntry } from '../logs/log-entry.js';
import type { DashboardJob, DashboardRoom, QueueCounts } from './dashboard-sources.js';
import { formatAge, formatBytes, formatClock, formatClockMs, formatDuration, num, truncate } from './format.js';
import { html, type SafeHtml } from './html.js';

/** Longest chat text or log message shown whole; the rest is cut (the CLI shows it all). */
const MAX_TEXT_CHARS = 500;
/** Longest value of one log field as shown. */
const MAX_FIELD_CHARS = 200;
/** Jobs per list (running, failed, finished). */
export const JOBS_PER_LIST = 20;

/** An error as a panel shows it: its catalog code, when it has one, and its message. */
export interface PanelError {
  code?: string;
  message: string;
}

export function panelErrorOf(err: unknown): PanelError {
  if (isConclaveError(err)) return { code: err.code, message: err.message };
  return { message: err instanceof Error ? err.message : String(err) };
}

function problem(error: PanelError): SafeHtml {
  return html`${error.code ? html`<code class="code">${error.code}</code> ` : ''}${truncate(error.message, MAX_TEXT_CHARS)}`;
}

/** A panel whose source failed or did not answer in time. */
export function unavailable(what: string, error: PanelError): SafeHtml {
  return html`<p class="unavailable">${what} unavailable: ${problem(error)}</p>`;
}

/** One row per node: state, backend, loaded models, load and the telemetry of its last heartbeat. */
export function nodesFragment(nodes: readonly NodeInfo[], nowMs: number): SafeHtml {
  if (nodes.length === 0) return html`<p class="empty">No nodes yet. Create a join string with <code>orchestrator token create</code>.</p>`;
  const rows = nodes.map((n) => {
    const slots = n.slots ?? 0;
    const running = n.running ?? 0;
    const memory = num(n.memoryBytes);
    const used = num(n.memoryUsedBytes);
    const state = n.state ?? 'unknown';
    const status = n.status && n.status !== 'accepted' ? n.status : '';
    return html`<tr data-node-id="${n.id ?? ''}">
<td><span class="name">${n.name ?? ''}</span><br><code class="id">${(n.id ?? '').slice(0, 12)}</code></td>
<td><span class="state state-${state}">${state}</span>${status ? html` <span class="status">${status}</span>` : ''}${n.draining ? html` <span class="status">draining</span>` : ''}</td>
<td>${n.backendActive || '–'}${(n.backends ?? []).length > 0 ? html`<br><small>${(n.backends ?? []).join(', ')}</small>` : ''}</td>
<td>${(n.loadedModels ?? []).length > 0 ? (n.loadedModels ?? []).join(', ') : '–'}</td>
<td><meter min="0" max="${Math.max(slots, 1)}" value="${running}"></meter> ${running}/${slots}</td>
<td>${memory > 0 ? html`<meter min="0" max="${memory}" value="${used}"></meter> ${formatBytes(used)} / ${formatBytes(memory)}` : '–'}</td>
<td>${n.cpuCores || '–'}</td>
<td>${formatAge(num(n.lastSeenMs), nowMs)}</td>
<td>${state === 'connected' || state === 'suspect' ? `${num(n.clockOffsetMs)} ms` : '–'}</td>
<td>${num(n.logSpoolBytes) > 0 ? formatBytes(num(n.logSpoolBytes)) : '–'}${num(n.logDroppedTotal) > 0 ? html` <span class="warn">${num(n.logDroppedTotal)} dropped</span>` : ''}</td>
</tr>`;
  });
  return html`<table class="nodes"><thead><tr><th>node</th><th>state</th><th>backend</th><th>loaded models</th><th>load</th><th>memory</th><th>cores</th><th>last seen</th><th>clock offset</th><th>log spool</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** BullMQ's counts, the states an operator looks at first. */
export function queueFragment(counts: QueueCounts): SafeHtml {
  const shown = ['waiting', 'prioritized', 'delayed', 'active', 'failed', 'completed'] as const;
  const tiles = shown.map((state) => html`<div class="tile" data-queue-state="${state}"><span class="count">${counts[state] ?? 0}</span><span class="label">${state}</span></div>`);
  return html`<div class="tiles">${tiles}</div>`;
}

/** Running and queued, failed (with their codes), and finished jobs, newest first. */
export function jobsFragment(jobs: readonly DashboardJob[], nodes: readonly NodeInfo[]): SafeHtml {
  const names = new Map(nodes.map((n) => [n.id ?? '', n.name ?? '']));
  const active = jobs.filter((j) => j.state === 'running' || j.state === 'queued').slice(0, JOBS_PER_LIST);
  const failed = jobs.filter((j) => j.state === 'failed').slice(0, JOBS_PER_LIST);
  const finished = jobs.filter((j) => j.state === 'completed' || j.state === 'cancelled').slice(0, JOBS_PER_LIST);
  const row = (j: DashboardJob) => html`<tr data-job-id="${j.id}" data-job-state="${j.state}">
<td><code>${j.id}</code></td><td><span class="job-state job-${j.state}">${j.state}</span></td><td>${j.kind}</td><td>${j.model}</td>
<td>${j.node ? names.get(j.node) || j.node.slice(0, 12) : '–'}</td><td>${j.attempts}</td>
<td>${formatClock(j.createdAtMs)}</td><td>${j.runMs > 0 ? formatDuration(j.runMs) : '–'}</td>
<td>${j.error ? html`<code class="code">${j.error.code ?? ''}</code> ${truncate(j.error.message ?? '', MAX_TEXT_CHARS)}` : ''}</td>
</tr>`;
  const table = (title: string, list: readonly DashboardJob[], id: string) => html`<h3>${title} <small>(${list.length})</small></h3>
${list.length === 0 ? html`<p class="empty">none</p>` : html`<table class="jobs" id="${id}"><thead><tr><th>id</th><th>state</th><th>kind</th><th>model</th><th>node</th><th>attempts</th><th>created</th><th>ran</th><th>error</th></tr></thead><tbody>${list.map(row)}</tbody></table>`}`;
  return html`${table('Running and queued', active, 'jobs-active')}${table('Failed', failed, 'jobs-failed')}${table('Finished', finished, 'jobs-finished')}`;
}

/** Each room with its newest messages. */
export function chatFragment(rooms: readonly DashboardRoom[]): SafeHtml {
  if (rooms.length === 0) return html`<p class="empty">No rooms.</p>`;
  return html`${rooms.map((room) => html`<article class="room" data-room="${room.name}">
<h3>#${room.name} <small>${room.members} members, seq ${room.headSeq}</small></h3>
${room.messages.length === 0 ? html`<p class="empty">no messages</p>` : html`<ol class="messages">${room.messages.map((m) => html`<li data-seq="${num(m.seq)}">
<time>${formatClock(num(m.atMs))}</time> <span class="sender">${m.senderName || m.sender || ''}</span>${m.kind && m.kind !== 'text' ? html` <span class="kind">${m.kind}</span>` : ''}
<span class="text">${truncate(m.text ?? '', MAX_TEXT_CHARS)}</span></li>`)}</ol>`}
</article>`)}`;
}

/**
 * The tail's state beside its entries: `error` is a follow that failed and is retried,
 * `refused` a filter that cannot be followed (no tail runs).
 */
export type LogTailStatus =
  | { kind: 'live' } | { kind: 'not-stored' } | { kind: 'error'; error: PanelError } | { kind: 'refused'; error: PanelError };

/** The tail, newest first (the page needs no script to keep the newest in view). */
export function logsFragment(entries: readonly StoredLogEntry[], status: LogTailStatus): SafeHtml {
  if (status.kind === 'not-stored') return html`<p class="empty">This orchestrator keeps no fleet log store: the live tail is off.</p>`;
  if (status.kind === 'refused') return html`<p class="unavailable" role="alert">No live tail for this filter: ${problem(status.error)}</p>`;
  const note = status.kind === 'error' ? html`<p class="unavailable">log tail interrupted, retrying: ${problem(status.error)}</p>` : '';
  if (entries.length === 0) return html`${note}<p class="empty">No matching log records yet.</p>`;
  const lines = [...entries].reverse().map((e) => (e.gap
    ? html`<li class="gap" data-log-id="${e.id}"><time>${formatClockMs(e.timeMs)}</time> ${String(e.fields.count ?? '?')} records missing (${String(e.fields.reason ?? 'unknown')})</li>`
    : html`<li class="lvl-${e.level}" data-log-id="${e.id}"><time>${formatClockMs(e.timeMs)}</time> <span class="level">${e.level.toUpperCase()}</span> <span class="tag">${e.code ?? `${e.prefix}-${e.section}`}</span>${e.node ? html` <span class="node">${e.nodeName || e.node.slice(0, 12)}</span>` : ''}${e.jobId ? html` <span class="job">job=${e.jobId}</span>` : ''} <span class="message">${truncate(e.message, MAX_TEXT_CHARS)}</span>${fieldsOf(e.fields)}</li>`));
  return html`${note}<ol class="log-lines">${lines}</ol>`;
}

function fieldsOf(fields: Record<string, unknown>): SafeHtml | string {
  const pairs = Object.entries(fields).map(([key, value]) => `${key}=${truncate(typeof value === 'string' ? value : safeJson(value), MAX_FIELD_CHARS)}`);
  return pairs.length === 0 ? '' : html` <span class="fields">${pairs.join(' ')}</span>`;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
