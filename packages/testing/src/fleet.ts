import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nullLogger } from '@conclave/common';
import type { Logger } from '@conclave/common';
import { startNodeAgent } from '@conclave/node-agent';
import type { NodeAgentHandle, NodeAgentOptions } from '@conclave/node-agent';
import { startOrchestrator } from '@conclave/orchestrator';
import type { OrchestratorHandle, OrchestratorOptions } from '@conclave/orchestrator';
import { spawnNode } from './child-process.js';
import type { ChildHandle } from './child-process.js';
import { createTestControl } from './control.js';

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(prefix = 'conclave-test-'): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export interface TestOrchestratorOptions extends Partial<OrchestratorOptions> {
  redisUrl: string;
}

/** An orchestrator in this process on free ports, with its own temporary data dir. */
export async function startTestOrchestrator(options: TestOrchestratorOptions): Promise<OrchestratorHandle> {
  const dir = await tempDir('conclave-orch-');
  const handle = await startOrchestrator({
    grpcHost: '127.0.0.1', grpcPort: 0, httpPort: 0, dataDir: dir.path, logger: nullLogger, ...options,
  });
  return {
    ...handle,
    async close() {
      await handle.close();
      await dir.remove();
    },
  };
}

/** Something that can let a node in: an orchestrator handle, in process or as a child. */
export interface JoinSource {
  address: string;
  createJoinString(ttlMs?: number): Promise<string>;
}

/**
 * A node agent in this process, with its own temporary data dir unless one is given. Given an
 * orchestrator handle, the node enrolls with a fresh join token (unless its data dir already
 * holds an identity that joined, or `join` is given).
 */
export async function startTestNode(
  options: Omit<Partial<NodeAgentOptions>, 'orchestrator'> & { orchestrator: string | JoinSource; logger?: Logger },
): Promise<NodeAgentHandle & { dataDir: string }> {
  const dir = options.dataDir ? undefined : await tempDir('conclave-node-');
  const dataDir = options.dataDir ?? dir?.path ?? '';
  const source = options.orchestrator;
  const join = options.join ?? (typeof source === 'string' || (await hasJoined(dataDir)) ? undefined : await source.createJoinString());
  const handle = await startNodeAgent({
    httpPort: -1, slots: 2, logger: nullLogger, ...options,
    orchestrator: typeof source === 'string' ? source : source.address, dataDir, ...(join ? { join } : {}),
  });
  return {
    nodeId: handle.nodeId,
    fatal: handle.fatal,
    httpPort: handle.httpPort,
    dataDir,
    get connected() {
      return handle.connected;
    },
    async close() {
      await handle.close();
      await dir?.remove();
    },
  };
}

const ORCHESTRATOR_MAIN = fileURLToPath(new URL('../../orchestrator/dist/main.js', import.meta.url));
const NODE_AGENT_MAIN = fileURLToPath(new URL('../../node-agent/dist/main.js', import.meta.url));

async function hasJoined(dataDir: string): Promise<boolean> {
  return access(join(dataDir, 'join-state.json')).then(() => true, () => false);
}

/** A join string from an orchestrator started as a child, through its Control API and operator token. */
async function createJoinFromChild(address: string, operatorToken: string, ttlMs?: number): Promise<string> {
  const control = createTestControl(address, { operatorToken });
  try {
    return await control.createJoinString(ttlMs);
  } finally {
    control.close();
  }
}

/** The `orchestrator` CLI as a child process on free ports; resolves once it serves. */
export async function spawnOrchestrator(options: {
  redisUrl?: string;
  dataDir: string;
  grpcPort?: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
}): Promise<ChildHandle & JoinSource & { operatorToken: string }> {
  const args = [
    'start', '--grpc-host', '127.0.0.1', '--grpc-port', String(options.grpcPort ?? 0), '--http-port', '0', '--data-dir', options.dataDir,
    ...(options.redisUrl ? ['--redis-url', options.redisUrl] : []), ...(options.args ?? []),
  ];
  const child = spawnNode(ORCHESTRATOR_MAIN, args, options.env);
  const match = await child.waitFor(/orchestrator ready .*grpc=(\S+)/);
  const address = match[1] ?? '';
  const operatorToken = (await readFile(join(options.dataDir, 'operator-token'), 'utf8')).trim();
  return Object.assign(child, {
    address,
    operatorToken,
    createJoinString: (ttlMs?: number) => createJoinFromChild(address, operatorToken, ttlMs),
  });
}

/**
 * The `node-agent` CLI as a child process; resolves once it has registered. Given an
 * orchestrator handle, a node whose data dir has not joined yet enrolls with a fresh token.
 */
export async function spawnNodeAgent(options: {
  orchestrator: string | JoinSource;
  join?: string;
  dataDir: string;
  name?: string;
  slots?: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** @default true */
  waitForConnection?: boolean;
  onOutputLine?: (line: string) => void;
}): Promise<ChildHandle & { nodeId: string }> {
  const source = options.orchestrator;
  const joinString = options.join ?? (typeof source === 'string' || (await hasJoined(options.dataDir)) ? undefined : await source.createJoinString());
  const args = [
    'start', '--orchestrator', typeof source === 'string' ? source : source.address, '--data-dir', options.dataDir, '--http-port', '0',
    ...(joinString ? ['--join', joinString] : []),
    ...(options.name ? ['--name', options.name] : []), ...(options.slots ? ['--slots', String(options.slots)] : []),
    ...(options.args ?? []),
  ];
  const child = spawnNode(NODE_AGENT_MAIN, args, options.env, options.onOutputLine);
  const started = await child.waitFor(/node agent started .*node=(\w+)/);
  if (options.waitForConnection !== false) await child.waitFor(/connected to orchestrator/);
  return Object.assign(child, { nodeId: started[1] ?? '' });
}
