/** The tab's icon (/dashboard/assets/icon.svg): four nodes around a hub. */
export const DASHBOARD_ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><g fill="#0969da"><circle cx="8" cy="8" r="3"/><circle cx="2.5" cy="2.5" r="2"/><circle cx="13.5" cy="2.5" r="2"/><circle cx="2.5" cy="13.5" r="2"/><circle cx="13.5" cy="13.5" r="2"/></g></svg>
`;

/**
 * The dashboard's stylesheet, served as /dashboard/assets/dashboard.css. Kept in a module so that
 * it ships inside dist/ with the code (the package has no asset copying step); the strict CSP
 * allows no inline style, so every style the pages use is here.
 */
export const DASHBOARD_CSS = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #667085; --bg: #f7f7f8; --panel: #fff; --line: #d9dce1;
  --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --accent: #0969da; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --muted: #98a2b3; --bg: #0f1115; --panel: #171a21; --line: #2b313c;
  --ok: #3fb950; --warn: #d29922; --bad: #f85149; --accent: #58a6ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel); }
header h1 { font-size: 1.1rem; margin: 0; }
header .spacer { flex: 1; }
header form { margin: 0; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(34rem, 1fr)); gap: 1rem; padding: 1rem; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .6rem .9rem; overflow: auto; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 1rem; margin: .2rem 0 .6rem; }
h3 { font-size: .9rem; margin: .8rem 0 .3rem; }
small, .id, time, .empty, .label { color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; font-size: .8rem; color: var(--muted); }
code { font: 12px/1.4 ui-monospace, monospace; }
meter { width: 4rem; vertical-align: middle; }
.state-connected, .job-completed { color: var(--ok); }
.state-suspect, .job-running, .job-queued, .warn, .lvl-warn .level { color: var(--warn); }
.state-dead, .state-disconnected, .job-failed, .unavailable, .lvl-error .level, .code { color: var(--bad); }
.status, .kind, .tag { font-size: .75rem; border: 1px solid var(--line); border-radius: 3px; padding: 0 .25rem; }
.tiles { display: flex; flex-wrap: wrap; gap: .5rem; }
.tile { border: 1px solid var(--line); border-radius: 4px; padding: .3rem .7rem; min-width: 6rem; }
.tile .count { display: block; font-size: 1.3rem; font-weight: 600; }
.room { border-top: 1px solid var(--line); }
.room:first-child { border-top: 0; }
ol { list-style: none; margin: 0; padding: 0; }
.messages li, .log-lines li { padding: .1rem 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.sender { font-weight: 600; }
.log-lines { font: 12px/1.4 ui-monospace, monospace; max-height: 32rem; overflow: auto; }
.log-lines .fields { color: var(--muted); }
.log-lines .gap { color: var(--warn); }
form.filters { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin-bottom: .6rem; }
form.filters label { display: flex; flex-direction: column; font-size: .8rem; color: var(--muted); }
form.filters fieldset label { flex-direction: row; gap: .2rem; color: var(--fg); }
form.filters fieldset { border: 0; padding: 0; margin: 0; display: flex; gap: .4rem; align-items: center; font-size: .8rem; }
input, select, button { font: inherit; padding: .2rem .4rem; }
.login { max-width: 26rem; margin: 12vh auto; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 1.2rem 1.4rem; }
.login label { display: block; margin: .8rem 0 .3rem; }
.login input { width: 100%; }
.login .error { color: var(--bad); }
`;
