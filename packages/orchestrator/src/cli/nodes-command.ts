import { EXIT_OK } from '@conclave/common';
import type { NodeInfo__Output } from '@conclave/protocol';
import type { CliIo } from './cli-io.js';
import type { ControlCalls } from './control-calls.js';
import { formatAge, formatJson, formatKeyValues, formatList, formatTable, orDash } from './output-format.js';

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
