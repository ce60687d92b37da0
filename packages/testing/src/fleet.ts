import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nullLogger } from '@conclave/common';
import type { Logger, ReadinessOf, ReadinessRole } from '@conclave/common';
import { NODE_AGENT_MAIN, nodeAgentStartArgv, startNodeAgent } from '@conclave/node-agent';
import type { NodeAgentHandle, NodeAgentOptions } from '@conclave/node-agent';
import { ORCHESTRATOR_MAIN, orchestratorStartArgv, startOrchestrator } from '@conclave/orchestrator';
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

async function hasJoined(dataDir: string): Promise<boolean> {
  return access(join(dataDir, 'join-state.json')).then(() => true, () => false);
}

/** The child's readiness; a child that is not ready in time is stopped, not left behind. */
async function readyOrStopped<R extends ReadinessRole>(child: ChildHandle, role: R): Promise<ReadinessOf<R>> {
  try {
    return await child.ready(role);
  } catch (err) {
    await child.stop();
    throw err;
  }
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

/** The `orchestrator` CLI as a child process on free ports; resolves once it is ready (its readiness line). */
export async function spawnOrchestrator(options: {
  redisUrl?: string;
  dataDir: string;
  grpcPort?: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Node's own flags (a benchmark's `--cpu-prof`). */
  nodeArgs?: string[];
}): Promise<ChildHandle & JoinSource & { operatorToken: string; httpPort: number | null }> {
  const args = [
    ...orchestratorStartArgv({
      grpcHost: '127.0.0.1', grpcPort: options.grpcPort ?? 0, httpPort: 0, dataDir: options.dataDir, redisUrl: options.redisUrl,
    }),
    ...(options.args ?? []),
  ];
  const child = spawnNode(ORCHESTRATOR_MAIN, args, options.env, undefined, options.nodeArgs);
  const { grpc: address, httpPort } = await readyOrStopped(child, 'orchestrator');
  const operatorToken = (await readFile(join(options.dataDir, 'operator-token'), 'utf8')).trim();
  return Object.assign(child, {
    address,
    httpPort,
    operatorToken,
    createJoinString: (ttlMs?: number) => createJoinFromChild(address, operatorToken, ttlMs),
  });
}

/**
 * The `node-agent` CLI as a child process; resolves once it is ready: its first session is up,
 * so it can take jobs. Given an orchestrator handle, a node whose data dir has not joined yet
 * enrolls with a fresh token.
 */
export async function spawnNodeAgent(options: {
  orchestrator: string | JoinSource;
  join?: string;
  dataDir: string;
  name?: string;
  slots?: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  onOutputLine?: (line: string) => void;
}): Promise<ChildHandle & { nodeId: string }> {
  const source = options.orchestrator;
  const joinString = options.join ?? (typeof source === 'string' || (await hasJoined(options.dataDir)) ? undefined : await source.createJoinString());
  const args = [
    ...nodeAgentStartArgv({
      orchestrator: typeof source === 'string' ? source : source.address, dataDir: options.dataDir, httpPort: 0,
      join: joinString, name: options.name, slots: options.slots,
    }),
    ...(options.args ?? []),
  ];
  const child = spawnNode(NODE_AGENT_MAIN, args, options.env, options.onOutputLine);
  const { node } = await readyOrStopped(child, 'node-agent');
  return Object.assign(child, { nodeId: node });
}
