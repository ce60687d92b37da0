import { EXIT_OK } from '@conclave/common';
import type { AcceleratorInfo__Output, ModelBackendStatus__Output, NodeInfo__Output } from '@conclave/protocol';
import type { CliIo } from './cli-io.js';
import type { ControlCalls } from './control-calls.js';
import { formatAge, formatBytes, formatJson, formatKeyValues, formatList, formatTable, formatTime, orDash } from './output-format.js';

export interface ListNodesOptions {
  json?: boolean;
  /** Clock for "last seen"; tests pin it. */
  now?: () => number;
}

/** `nodes list`: `--json` prints the NodeInfo fields as they arrive (camelCase). */
export async function listNodesCommand(calls: ControlCalls, io: CliIo, options: ListNodesOptions): Promise<number> {
  const nodes = await calls.listNodes();
  io.stdout.write(options.json ? formatJson(nodes.map(nodeToJson)) : formatNodeTable(nodes, (options.now ?? Date.now)()));
  return EXIT_OK;
}

export type NodeJson = NodeInfo__Output;

export function nodeToJson(node: NodeInfo__Output): NodeJson {
  return {
    ...node,
    lastSeenMs: Number(node.lastSeenMs),
    connectedAtMs: Number(node.connectedAtMs),
    memoryBytes: Number(node.memoryBytes),
    memoryUsedBytes: Number(node.memoryUsedBytes),
    clockOffsetMs: Number(node.clockOffsetMs),
    logSpoolBytes: Number(node.logSpoolBytes),
    logDroppedTotal: Number(node.logDroppedTotal),
  };
}

/** A live node an operator drained shows as `draining` (it still runs what it has). */
function stateOf(node: NodeInfo__Output): string {
  return node.draining && (node.state === 'connected' || node.state === 'suspect') ? `${node.state}, draining` : orDash(node.state);
}

export function formatNodeTable(nodes: readonly NodeInfo__Output[], now: number): string {
  if (nodes.length === 0) return 'no nodes; start one with `node-agent start --orchestrator HOST:PORT --data-dir DIR`\n';
  return formatTable(
    [
      { header: 'id' },
      { header: 'name' },
      { header: 'status' },
      { header: 'state' },
      { header: 'slots', align: 'right' },
      { header: 'backend' },
      { header: 'accelerator' },
      { header: 'loaded models' },
      { header: 'last seen', align: 'right' },
    ],
    nodes.map((n) => [
      n.id,
      orDash(n.name),
      orDash(n.status),
      stateOf(n),
      `${n.running}/${n.slots}`,
      orDash(n.backendActive),
      formatAccelerator(n.accelerator),
      formatList(n.loadedModels),
      formatAge(Number(n.lastSeenMs), now),
    ]),
  );
}

export interface NodeActionOptions {
  json?: boolean;
}

/** `nodes approve ID`: a pending node becomes accepted and may connect. */
export async function approveNodeCommand(calls: ControlCalls, io: CliIo, id: string, options: NodeActionOptions): Promise<number> {
  writeNode(io, await calls.approveNode(id), options);
  return EXIT_OK;
}

/** `nodes revoke ID`: the orchestrator ends the node's sessions and refuses it from then on. */
export async function revokeNodeCommand(calls: ControlCalls, io: CliIo, id: string, options: NodeActionOptions): Promise<number> {
  writeNode(io, await calls.revokeNode(id), options);
  return EXIT_OK;
}

/** `nodes drain ID`: no new work goes to the node; what it runs finishes. Kept until `nodes undrain`. */
export async function drainNodeCommand(calls: ControlCalls, io: CliIo, id: string, options: NodeActionOptions): Promise<number> {
  writeNode(io, await calls.drainNode(id), options, true);
  return EXIT_OK;
}

/** `nodes undrain ID`: the node takes new work again. */
export async function undrainNodeCommand(calls: ControlCalls, io: CliIo, id: string, options: NodeActionOptions): Promise<number> {
  writeNode(io, await calls.undrainNode(id), options, true);
  return EXIT_OK;
}

function writeNode(io: CliIo, node: NodeInfo__Output, options: NodeActionOptions, scheduling = false): void {
  io.stdout.write(
    options.json
      ? formatJson(nodeToJson(node))
      : formatKeyValues([
          ['id', node.id],
          ['name', orDash(node.name)],
          ...(scheduling
            ? ([
                ['state', stateOf(node)],
                ['running', String(node.running)],
              ] as Array<[string, string]>)
            : ([
                ['status', orDash(node.status)],
                ['fingerprint', orDash(node.fingerprint)],
              ] as Array<[string, string]>)),
        ]),
  );
}

export interface GetNodeOptions {
  json?: boolean;
  /** Clock for "last seen"; tests pin it. */
  now?: () => number;
}

/**
 * `nodes get ID|NAME`: every NodeInfo field, then where each loaded model really runs (models
 * named from the registry when it answers); `--json` as `nodes list --json` has one node.
 */
export async function getNodeCommand(calls: ControlCalls, io: CliIo, idOrName: string, options: GetNodeOptions): Promise<number> {
  const node = await calls.getNode(idOrName);
  if (options.json) {
    io.stdout.write(formatJson(nodeToJson(node)));
    return EXIT_OK;
  }
  // Names are a convenience: a registry that does not answer leaves the digests.
  const names = node.modelBackends.length > 0
    ? new Map((await calls.listModels().catch(() => [])).map((m) => [m.sha256, m.name]))
    : new Map<string, string>();
  io.stdout.write(formatNode(node, (options.now ?? Date.now)(), names));
  return EXIT_OK;
}

export function formatNode(node: NodeInfo__Output, now: number, modelNames: ReadonlyMap<string, string> = new Map()): string {
  const memory = Number(node.memoryBytes);
  const used = Number(node.memoryUsedBytes);
  const lastSeen = Number(node.lastSeenMs);
  const text = formatKeyValues([
    ['id', node.id],
    ['name', orDash(node.name)],
    ['status', orDash(node.status)],
    ['fingerprint', orDash(node.fingerprint)],
    ['state', stateOf(node)],
    ['address', orDash(node.address)],
    ['slots', `${node.running}/${node.slots} running`],
    ['backends', formatList(node.backends)],
    ['backend active', orDash(node.backendActive)],
    ...acceleratorRows(node.accelerator),
    ['features', formatList(node.features)],
    ['cpu cores', node.cpuCores > 0 ? String(node.cpuCores) : '-'],
    ['memory', memory > 0 ? `${used > 0 ? `${formatBytes(used)} used of ` : ''}${formatBytes(memory)}` : '-'],
    ['loaded models', formatList(node.loadedModels)],
    ['models on disk', formatList(node.models)],
    ['connected', formatTime(Number(node.connectedAtMs))],
    ['last seen', lastSeen > 0 ? `${formatTime(lastSeen)} (${formatAge(lastSeen, now)} ago)` : '-'],
    ['clock offset', `${Number(node.clockOffsetMs)} ms`],
    ['log spool', formatBytes(Number(node.logSpoolBytes))],
    ['logs dropped', String(Number(node.logDroppedTotal))],
  ]);
  return node.modelBackends.length > 0 ? `${text}
${formatModelBackends(node.modelBackends, modelNames)}` : text;
}

/** The accelerator in a table cell: `hailo HAILO8 gen3 52°C`, `hailo unavailable`, or `-` without one. */
export function formatAccelerator(a: AcceleratorInfo__Output | null | undefined): string {
  if (!a?.kind || a.state === 'absent') return '-';
  if (a.state !== 'active') return `${a.kind} ${a.state || 'unknown'}`;
  return [
    a.kind, a.arch, a.pcieGen > 0 ? `gen${a.pcieGen}` : '', a.temperatureC > 0 ? `${Math.round(a.temperatureC)}°C` : '',
    isThrottled(a.throttled) ? 'throttled' : '',
  ].filter(Boolean).join(' ');
}

/**
 * The firmware says the board is throttled or under-voltage now: bits 0–3. Bits 16–19 say it
 * happened since boot, which `nodes get` shows in the raw flags but is no state of the board now.
 */
function isThrottled(flags: string): boolean {
  const value = Number(flags);
  return flags !== '' && Number.isFinite(value) && (value & 0xf) !== 0;
}

function acceleratorRows(a: AcceleratorInfo__Output | null | undefined): Array<[string, string]> {
  if (!a?.kind) return [['accelerator', '-']];
  return [
    ['accelerator', `${a.kind} ${orDash(a.state)}${a.reason ? ` (${a.reason})` : ''}`],
    ['  arch', orDash(a.arch)],
    ['  firmware', orDash(a.firmwareVersion)],
    ['  hailort', orDash(a.hailortVersion)],
    ['  driver', orDash(a.driverVersion)],
    ['  pcie', a.pcieGen > 0 ? `gen${a.pcieGen} x${a.pcieWidth || '?'}` : '-'],
    ['  temperature', a.temperatureC > 0 ? `${a.temperatureC.toFixed(1)} °C` : '-'],
    ['  throttled', a.throttled ? `${a.throttled}${isThrottled(a.throttled) ? ' (throttled or under-voltage)' : ''}` : '-'],
    ...(a.warnings.length > 0 ? a.warnings.map((w): [string, string] => ['  warning', w]) : []),
  ];
}

/** Where each loaded model runs on the node, as its last heartbeat said. */
export function formatModelBackends(models: readonly ModelBackendStatus__Output[], names: ReadonlyMap<string, string>): string {
  return formatTable(
    [
      { header: 'model' }, { header: 'runs on' }, { header: 'p50 ms', align: 'right' }, { header: 'runs', align: 'right' },
      { header: 'errors', align: 'right' }, { header: 'reason' },
    ],
    [...models]
      .sort((a, b) => (names.get(a.sha256) ?? a.sha256).localeCompare(names.get(b.sha256) ?? b.sha256))
      .map((m) => [
        names.get(m.sha256) ?? m.sha256.slice(0, 12),
        orDash(m.backend),
        m.runs > 0 ? m.p50Ms.toFixed(2) : '-',
        String(Number(m.runs)),
        String(Number(m.errors)),
        orDash(m.reason),
      ]),
  );
}
