import { mkdtemp, rm } from 'node:fs/promises';
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
    grpcPort: 0, httpPort: 0, dataDir: dir.path, logger: nullLogger, ...options,
  });
  return {
    ...handle,
    async close() {
      await handle.close();
      await dir.remove();
    },
  };
}

/** A node agent in this process, with its own temporary data dir unless one is given. */
export async function startTestNode(
  options: Partial<NodeAgentOptions> & { orchestrator: string; logger?: Logger },
): Promise<NodeAgentHandle & { dataDir: string }> {
  const dir = options.dataDir ? undefined : await tempDir('conclave-node-');
  const dataDir = options.dataDir ?? dir?.path ?? '';
  const handle = await startNodeAgent({ httpPort: -1, slots: 2, logger: nullLogger, ...options, dataDir });
  return {
    nodeId: handle.nodeId,
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

/** The `orchestrator` CLI as a child process on free ports; resolves once it serves. */
export async function spawnOrchestrator(options: {
  redisUrl?: string;
  dataDir: string;
  grpcPort?: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
}): Promise<ChildHandle & { address: string }> {
  const args = [
    'start', '--grpc-port', String(options.grpcPort ?? 0), '--http-port', '0', '--data-dir', options.dataDir,
    ...(options.redisUrl ? ['--redis-url', options.redisUrl] : []), ...(options.args ?? []),
  ];
  const child = spawnNode(ORCHESTRATOR_MAIN, args, options.env);
  const match = await child.waitFor(/orchestrator ready .*grpc=(\S+)/);
  return Object.assign(child, { address: match[1] ?? '' });
}

/** The `node-agent` CLI as a child process; resolves once it has registered. */
export async function spawnNodeAgent(options: {
  orchestrator: string;
  dataDir: string;
  name?: string;
  slots?: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** @default true */
  waitForConnection?: boolean;
  onOutputLine?: (line: string) => void;
}): Promise<ChildHandle & { nodeId: string }> {
  const args = [
    'start', '--orchestrator', options.orchestrator, '--data-dir', options.dataDir, '--http-port', '0',
    ...(options.name ? ['--name', options.name] : []), ...(options.slots ? ['--slots', String(options.slots)] : []),
    ...(options.args ?? []),
  ];
  const child = spawnNode(NODE_AGENT_MAIN, args, options.env, options.onOutputLine);
  const started = await child.waitFor(/node agent started .*node=(\w+)/);
  if (options.waitForConnection !== false) await child.waitFor(/connected to orchestrator/);
  return Object.assign(child, { nodeId: started[1] ?? '' });
}
