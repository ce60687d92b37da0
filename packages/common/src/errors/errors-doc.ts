import { fileURLToPath } from 'node:url';
import { SECTIONS } from '../logger.js';
import { CATALOG, LOG_PREFIXES, SECTION_RANGES } from './catalog/index.js';
import { STATUS_MAP } from './status-map.js';

/** docs/errors.md; this file sits at the same depth in src/ and dist/ (packages/common/*\/errors). */
export const ERRORS_DOC_PATH = fileURLToPath(new URL('../../../../docs/errors.md', import.meta.url));

const PREFIX_TITLES = {
  ORCH: 'Orchestrator',
  NODE: 'Node agent',
  CHAT: 'Group chat',
  MODEL: 'Text model server',
} as const;

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function range(low: number, high: number): string {
  return `${low}–${high}`;
}

/** The error catalog as markdown: the source of docs/errors.md. */
export function renderErrorsDoc(): string {
  const out: string[] = [
    '# Error catalog',
    '',
    '<!-- Generated from packages/common/src/errors/catalog/ by `pnpm docs:errors`; do not edit by hand. -->',
    '',
    'Every error Conclave logs or returns has a stable code `<PREFIX>-<SECTION>-<NUMBER>`, e.g. `NODE-LOAD-104`.',
    'The prefix names the part of the system (`ORCH` orchestrator, `NODE` node agent, `CHAT` group chat,',
    '`MODEL` text model server); the section names what it was doing; the number is unique within the',
    "prefix and lies in its section's range. Log lines carry the same code in their tag:",
    '`2026-11-27T10:00:00.000Z ERROR NODE-LOAD-104 model file failed verification node=ab12 …`.',
    '',
    'Status is the gRPC status returned at the edge; the HTTP status follows from it.',
    '',
    '| section | numbers | about |',
    '|---|---|---|',
  ];
  const about: Record<(typeof SECTIONS)[number], string> = {
    LOAD: 'model loading',
    REQ: 'request processing',
    RESP: 'response generation',
    MEM: 'memory',
    AUTH: 'authentication, enrollment, sealed sessions',
    NET: 'network and connections',
    STATE: 'configuration, processes, stored state',
    JOB: 'jobs',
    SCHED: 'scheduling',
    HEALTH: 'health checks',
    CLEAN: 'resource cleanup',
  };
  const bySectionStart = [...SECTIONS].sort((a, b) => SECTION_RANGES[a][0] - SECTION_RANGES[b][0]);
  for (const section of bySectionStart) {
    const [low, high] = SECTION_RANGES[section];
    out.push(`| ${section} | ${range(low, high)} | ${about[section]} |`);
  }
  for (const prefix of LOG_PREFIXES) {
    const entries = CATALOG.filter((e) => e.prefix === prefix);
    out.push('', `## ${prefix} — ${PREFIX_TITLES[prefix]}`, '');
    if (entries.length === 0) {
      out.push('No codes yet.');
      continue;
    }
    out.push('| code | section | status | message | recovery | retryable |', '|---|---|---|---|---|---|');
    for (const e of entries) {
      const { grpc, http } = STATUS_MAP[e.status];
      out.push(
        `| \`${e.code}\` | ${e.section} | ${e.status} (gRPC ${grpc}, HTTP ${http}) | ${cell(e.message)} | ` +
          `${cell(e.recovery)} | ${e.retryable ? 'yes' : 'no'} |`,
      );
    }
  }
  return out.join('\n') + '\n';
}
