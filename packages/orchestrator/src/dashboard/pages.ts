import { LOG_LEVELS, LOG_PREFIXES, SECTIONS } from '@conclave/common';
import { html, SafeHtml, type HtmlValue } from './html.js';
import type { LogTailQuery } from './log-tail-query.js';

/** Where everything lives; the session cookie's Path. */
export const DASHBOARD_PATH = '/dashboard';
export const ASSET_PATHS = {
  css: `${DASHBOARD_PATH}/assets/dashboard.css`,
  icon: `${DASHBOARD_PATH}/assets/icon.svg`,
  htmx: `${DASHBOARD_PATH}/assets/htmx.min.js`,
  sse: `${DASHBOARD_PATH}/assets/htmx-ext-sse.min.js`,
} as const;
export const EVENTS_PATH = `${DASHBOARD_PATH}/events`;
export const LOGIN_PATH = `${DASHBOARD_PATH}/login`;
export const LOGOUT_PATH = `${DASHBOARD_PATH}/logout`;

/** The panels the stream replaces, each by its SSE event name (the same as the element's id). */
export const PANELS = ['nodes', 'queue', 'jobs', 'chat', 'logs'] as const;
export type Panel = (typeof PANELS)[number];
export type PanelHtml = Record<Panel, SafeHtml>;

/**
 * htmx's own settings: no indicator <style> (the CSP refuses inline style), no eval and no
 * script tags from swapped content, and no copies of these pages in localStorage.
 */
const HTMX_CONFIG = JSON.stringify({ includeIndicatorStyles: false, allowEval: false, allowScriptTags: false, historyCacheSize: 0 });

function shell(title: string, body: SafeHtml, scripts: boolean): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<link rel="stylesheet" href="${ASSET_PATHS.css}">
<link rel="icon" href="${ASSET_PATHS.icon}" type="image/svg+xml">
${scripts ? html`<meta name="htmx-config" content="${HTMX_CONFIG}">
<script defer src="${ASSET_PATHS.htmx}"></script>
<script defer src="${ASSET_PATHS.sse}"></script>` : ''}
</head>
<body>
${body}
</body>
</html>
`;
}

/** The password form; `problem` says why the last attempt failed. */
export function loginPage(problem?: string): SafeHtml {
  return shell('Conclave fleet: log in', html`<form class="login" method="post" action="${LOGIN_PATH}">
<h1>Conclave fleet</h1>
<p>Log in with the operator token: <code>CONCLAVE_OPERATOR_TOKEN</code>, or the file <code>&lt;data-dir&gt;/operator-token</code> on the orchestrator's host.</p>
${problem ? html`<p class="error" role="alert">${problem}</p>` : ''}
<label for="token">Operator token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<p><button type="submit">Log in</button></p>
</form>`, false);
}

/** A page with one sentence, for refusals and errors. */
export function messagePage(title: string, text: string): SafeHtml {
  return shell(title, html`<div class="login"><h1>${title}</h1><p>${text}</p><p><a href="${DASHBOARD_PATH}">Back to the dashboard</a></p></div>`, false);
}

/**
 * The dashboard: every panel as it is now, then kept current by the event stream, whose URL
 * carries `streamParams` (the tail's filters); `query` fills the filter form.
 */
export function dashboardPage(panels: PanelHtml, query: LogTailQuery, streamParams: URLSearchParams): SafeHtml {
  const params = streamParams.toString();
  const streamUrl = params ? `${EVENTS_PATH}?${params}` : EVENTS_PATH;
  const panel = (id: Panel, title: string, extra: HtmlValue = '', wide = false) => html`<section class="${wide ? 'wide' : ''}" aria-labelledby="${id}-title">
<h2 id="${id}-title">${title}</h2>${extra}
<div id="${id}" sse-swap="${id}">${panels[id]}</div>
</section>`;
  return shell('Conclave fleet', html`<header><h1>Conclave fleet</h1><span class="spacer"></span>
<form method="post" action="${LOGOUT_PATH}"><button type="submit">Log out</button></form></header>
<main hx-ext="sse" sse-connect="${streamUrl}">
${panel('nodes', 'Nodes', '', true)}
${panel('queue', 'Queue')}
${panel('chat', 'Chat rooms')}
${panel('jobs', 'Jobs', '', true)}
${panel('logs', 'Live log tail', filterForm(query), true)}
</main>`, true);
}

function filterForm(query: LogTailQuery): SafeHtml {
  const options = (values: readonly string[], selected: string | undefined, any: string) => html`<option value="">${any}</option>${values.map((v) => html`<option value="${v}"${v === selected ? new SafeHtml(' selected') : ''}>${v}</option>`)}`;
  return html`<form class="filters" method="get" action="${DASHBOARD_PATH}">
<fieldset><legend>prefix</legend>${LOG_PREFIXES.map((p) => html`<label><input type="checkbox" name="prefix" value="${p}"${query.prefixes.includes(p) ? new SafeHtml(' checked') : ''}>${p}</label>`)}</fieldset>
<label>node <input name="node" value="${query.node ?? ''}" placeholder="id or name" size="14"></label>
<label>section <select name="section">${options(SECTIONS, query.section, 'any')}</select></label>
<label>level <select name="level">${options(LOG_LEVELS, query.level, 'debug and up')}</select></label>
<label>job <input name="job" value="${query.job ?? ''}" placeholder="job id" size="14"></label>
<button type="submit">Filter</button> <a href="${DASHBOARD_PATH}">clear</a>
</form>`;
}
