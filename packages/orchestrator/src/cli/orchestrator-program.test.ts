import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError, captureLogger, parseReadinessLine, type ClosableLogger } from '@conclave/common';
import {
  tensorFromJson,
  type Job__Output,
  type JoinToken__Output,
  type ListJobsRequest,
  type ListJobsResponse__Output,
  type ModelInfo__Output,
  type NodeInfo__Output,
  type SubmitJobRequest,
} from '@conclave/protocol';
import { resolveOrchestratorOptions, type OrchestratorOptions } from '../orchestrator-options.js';
import { StringOut } from './cli-io.js';
import type { ControlCalls } from './control-calls.js';
import { MODEL_CHUNK_BYTES } from './models-command.js';
import { runOrchestratorCli, type ConnectOptions, type OrchestratorCliDeps } from './orchestrator-program.js';

function job(overrides: Partial<Job__Output> = {}): Job__Output {
  return {
    id: 'job-1',
    state: 'JOB_STATE_QUEUED',
    model: 'add',
    node: '',
    attempts: 0,
    outputs: {},
    error: null,
    createdAtMs: 1_700_000_000_000,
    finishedAtMs: 0,
    generated: null,
    kind: 'infer',
    runMs: 0,
    waiting: '',
    requirements: null,
    ...overrides,
  };
}

const NODE: NodeInfo__Output = {
  id: 'n-3f9a',
  name: 'pi-01',
  state: 'connected',
  slots: 4,
  running: 1,
  backends: ['cpu'],
  backendActive: 'cpu',
  loadedModels: ['add'],
  models: ['add'],
  lastSeenMs: 0,
  connectedAtMs: 0,
  cpuCores: 4,
  memoryBytes: 8 * 1024 ** 3,
  features: [],
  address: '10.0.0.5',
  status: 'accepted',
  fingerprint: 'SHA256:JPbtasv-EAnAMNfKVnwzykgwkRSYI2tVYabIKr7F3ig',
  draining: false,
  memoryUsedBytes: 2 * 1024 ** 3,
  clockOffsetMs: 3,
  logSpoolBytes: 0,
  logDroppedTotal: 0,
  accelerator: null,
  modelBackends: [],
};

const JOIN = 'conclave-join:v1:orchestrator.local:7400:' + 'A'.repeat(43) + ':SHA256:JPbtasv-EAnAMNfKVnwzykgwkRSYI2tVYabIKr7F3ig';
const CREATED_AT_MS = Date.UTC(2026, 10, 27, 10, 0, 0);

function joinToken(overrides: Partial<JoinToken__Output> = {}): JoinToken__Output {
  return {
    id: '3f9a1c27d0ab',
    join: '',
    createdAtMs: CREATED_AT_MS,
    expiresAtMs: CREATED_AT_MS + 3_600_000,
    used: false,
    revoked: false,
    usedBy: '',
    ...overrides,
  };
}

const MODEL: ModelInfo__Output = {
  name: 'add',
  sha256: 'ab'.repeat(32),
  size: 600_000,
  inputs: [{ name: 'x', dtype: 'float32', dims: [-1, 4], dimNames: ['batch', ''] }],
  outputs: [{ name: 'y', dtype: 'float32', dims: [-1, 4], dimNames: ['batch', ''] }],
  addedAtMs: 1_700_000_000_000,
  artifacts: [],
  hailo: null,
};

/** Records what the commands asked for; answers like a small orchestrator. */
class FakeCalls implements ControlCalls {
  readonly submitted: SubmitJobRequest[] = [];
  readonly uploads: Array<{ header: unknown; chunkSizes: number[] }> = [];
  readonly admin: Array<[string, unknown]> = [];
  readonly listRequests: ListJobsRequest[] = [];
  /** What ListJobs answers, one page a call; every page but the last has a next_page_token. */
  jobPages: Job__Output[][] = [[]];
  closed = false;
  failWith: Error | undefined;

  constructor(
    readonly address: string,
    readonly options: ConnectOptions = {},
  ) {}

  async submitJob(request: SubmitJobRequest): Promise<Job__Output> {
    this.check();
    this.submitted.push(request);
    return job({ kind: request.generate ? 'generate' : 'infer' });
  }
  async getJob(id: string): Promise<Job__Output> {
    this.check();
    return job({ id, state: 'JOB_STATE_RUNNING', node: 'n-3f9a' });
  }
  async cancelJob(id: string): Promise<Job__Output> {
    return job({ id, state: 'JOB_STATE_CANCELLED' });
  }
  async listJobs(request: ListJobsRequest): Promise<ListJobsResponse__Output> {
    this.check();
    const page = Number(request.pageToken || '0');
    this.listRequests.push(request);
    return { jobs: this.jobPages[page] ?? [], nextPageToken: page + 1 < this.jobPages.length ? String(page + 1) : '' };
  }
  async getNode(id: string): Promise<NodeInfo__Output> {
    this.check();
    this.admin.push(['getNode', id]);
    return { ...NODE, logSpoolBytes: 3 * 1024 * 1024, logDroppedTotal: 12 };
  }
  async removeModel(name: string, force: boolean): Promise<ModelInfo__Output> {
    this.check();
    this.admin.push(['removeModel', { name, force }]);
    return { ...MODEL, name };
  }
  async watchJob(id: string, onUpdate?: (job: Job__Output) => void): Promise<Job__Output> {
    onUpdate?.(job({ id, state: 'JOB_STATE_RUNNING', node: 'n-3f9a' }));
    const done = job({
      id,
      state: 'JOB_STATE_COMPLETED',
      node: 'n-3f9a',
      attempts: 1,
      finishedAtMs: 1_700_000_000_500,
      runMs: 1.25,
      outputs: { y: tensorFromJson({ dtype: 'float32', dims: [1, 2], data: [1.5, 2] }) },
    });
    onUpdate?.(done);
    return done;
  }
  async listNodes(): Promise<NodeInfo__Output[]> {
    this.check();
    return [NODE];
  }
  async listModels(): Promise<ModelInfo__Output[]> {
    return [MODEL];
  }
  async addModel(header: { name?: string; size?: unknown }, chunks: AsyncIterable<Uint8Array>): Promise<ModelInfo__Output> {
    const chunkSizes: number[] = [];
    for await (const chunk of chunks) chunkSizes.push(chunk.byteLength);
    this.uploads.push({ header, chunkSizes });
    return { ...MODEL, name: header.name ?? '', size: Number(header.size) };
  }
  async createJoinToken(ttlSeconds = 0): Promise<JoinToken__Output> {
    this.check();
    this.admin.push(['createJoinToken', ttlSeconds]);
    const ttlMs = (ttlSeconds || 3600) * 1000;
    return joinToken({ join: JOIN, expiresAtMs: CREATED_AT_MS + ttlMs });
  }
  async listJoinTokens(): Promise<JoinToken__Output[]> {
    this.check();
    return [
      joinToken(),
      joinToken({ id: 'aaaaaaaaaaaa', used: true, usedBy: 'n-3f9a' }),
      joinToken({ id: 'bbbbbbbbbbbb', revoked: true }),
      joinToken({ id: 'cccccccccccc', expiresAtMs: CREATED_AT_MS - 1 }),
    ];
  }
  async revokeJoinToken(id: string): Promise<JoinToken__Output> {
    this.check();
    this.admin.push(['revokeJoinToken', id]);
    return joinToken({ id, revoked: true });
  }
  async approveNode(id: string): Promise<NodeInfo__Output> {
    this.check();
    this.admin.push(['approveNode', id]);
    return { ...NODE, id, status: 'accepted' };
  }
  async revokeNode(id: string): Promise<NodeInfo__Output> {
    this.check();
    this.admin.push(['revokeNode', id]);
    return { ...NODE, id, status: 'revoked' };
  }
  async drainNode(id: string): Promise<NodeInfo__Output> {
    this.check();
    this.admin.push(['drainNode', id]);
    return { ...NODE, id, draining: true };
  }
  async undrainNode(id: string): Promise<NodeInfo__Output> {
    this.check();
    this.admin.push(['undrainNode', id]);
    return { ...NODE, id, draining: false };
  }
  // The logs command and the chat commands have their own tests.
  tailLogs = (): never => {
    throw new Error('not used in these tests');
  };
  createRoom = notUsedHere;
  listRooms = notUsedHere;
  postMessage = notUsedHere;
  claimResource = notUsedHere;
  releaseResource = notUsedHere;
  getRoomContext = notUsedHere;
  followRoom = (): never => {
    throw new Error('not used in these tests');
  };
  close(): void {
    this.closed = true;
  }
  private check(): void {
    if (this.failWith) throw this.failWith;
  }
}

async function notUsedHere(): Promise<never> {
  throw new Error('not used in these tests');
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  calls: FakeCalls[];
  started: OrchestratorOptions[];
}

async function run(
  argv: string[],
  options: {
    env?: Record<string, string>; deps?: Partial<OrchestratorCliDeps>; failWith?: Error; cwd?: string;
    /** Scripts each fake before the command uses it. */
    setup?: (fake: FakeCalls) => void;
  } = {},
): Promise<Run> {
  const stdout = new StringOut();
  const stderr = new StringOut();
  const calls: FakeCalls[] = [];
  const started: OrchestratorOptions[] = [];
  const code = await runOrchestratorCli(argv, {
    env: options.env ?? {},
    io: { stdout, stderr },
    connect: (address, connectOptions) => {
      const fake = new FakeCalls(address, connectOptions);
      if (options.failWith) fake.failWith = options.failWith;
      options.setup?.(fake);
      calls.push(fake);
      return fake;
    },
    startOrchestrator: async (o) => {
      started.push(o);
      return { address: `127.0.0.1:${o.grpcPort ?? 0}`, httpPort: o.httpPort ?? 0, fingerprint: 'SHA256:fake', close: async () => {} };
    },
    shutdownSignal: () => Promise.resolve('SIGTERM'),
    interruptSignal: () => new Promise<string>(() => undefined),
    createLogger: () => Object.assign(captureLogger('ORCH').logger, { close: async () => {} }) as ClosableLogger,
    // No lock files under the data dirs these fake starts name (/from/flag, ./.conclave/…).
    lockDataDir: async () => ({ release: async () => {} }),
    // Never the repo's own ./.conclave: default token discovery looks in a dir without one.
    cwd: options.cwd ?? EMPTY_CWD,
    ...options.deps,
  });
  return { code, stdout: stdout.text, stderr: stderr.text, calls, started };
}

const EMPTY_CWD = join(tmpdir(), 'conclave-cli-no-such-dir');

const INPUT = '{"x": {"dtype": "float32", "dims": [1, 2], "data": [0.5, 1]}}';

describe('orchestrator CLI: client commands', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('nodes list --json prints an array with id, name and state', async () => {
    const r = await run(['nodes', 'list', '--json']);
    expect(r.code).toBe(0);
    const nodes = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({ id: 'n-3f9a', name: 'pi-01', state: 'connected', slots: 4, running: 1 });
    expect(r.calls[0]?.closed).toBe(true);
  });

  it('nodes list prints an aligned table', async () => {
    const r = await run(['nodes', 'list']);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+STATUS\s+STATE\s+SLOTS\s+BACKEND\s+ACCELERATOR\s+LOADED MODELS\s+LAST SEEN$/);
    expect(lines[1]).toMatch(/^n-3f9a\s+pi-01\s+accepted\s+connected\s+1\/4\s+cpu\s+-\s+add\s+-$/);
  });

  it('models list prints specs with symbolic dims, and --json the full model', async () => {
    const human = await run(['models', 'list']);
    expect(human.stdout).toContain('x:float32[batch,4]');
    const json = await run(['models', 'list', '--json']);
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({ name: 'add', size: 600_000, inputs: [expect.objectContaining({ name: 'x', dims: [-1, 4] })] }),
    ]);
  });

  it('models add streams the header, then 256 KiB chunks', async () => {
    const file = join(dir, 'model.onnx');
    await writeFile(file, Buffer.alloc(2 * MODEL_CHUNK_BYTES + 1000, 7));
    const r = await run(['models', 'add', 'big', file, '--json']);
    expect(r.code).toBe(0);
    expect(r.calls[0]?.uploads).toEqual([
      { header: { name: 'big', size: 2 * MODEL_CHUNK_BYTES + 1000, files: [] }, chunkSizes: [MODEL_CHUNK_BYTES, MODEL_CHUNK_BYTES, 1000] },
    ]);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: 'big', size: 2 * MODEL_CHUNK_BYTES + 1000 });
  });

  it('models add of a missing file is ORCH-REQ-252, exit 2', async () => {
    const r = await run(['models', 'add', 'm', join(dir, 'nope.onnx')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ORCH-REQ-252 model file unreadable: /);
    expect(r.calls[0]?.uploads).toEqual([]);
  });

  it('jobs submit sends an infer request with priority and timeout', async () => {
    const r = await run(['jobs', 'submit', '--model', 'add', '--input', INPUT, '--priority', '5', '--timeout-ms', '2000']);
    expect(r.code).toBe(0);
    const request = r.calls[0]?.submitted[0];
    expect(request).toMatchObject({ infer: { model: 'add' }, priority: 5, timeoutMs: 2000 });
    expect(Object.keys(request?.infer?.inputs ?? {})).toEqual(['x']);
    expect(r.stdout).toMatch(/^id:\s+job-1$/m);
    expect(r.stdout).toMatch(/^state:\s+queued$/m);
  });

  it('jobs submit --wait --json prints id, lower-case state, node and JSON outputs', async () => {
    const r = await run(['jobs', 'submit', '--model', 'add', '--input', INPUT, '--wait', '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({
      id: 'job-1',
      state: 'completed',
      node: 'n-3f9a',
      outputs: { y: { dtype: 'float32', dims: [1, 2], data: [1.5, 2] } },
    });
  });

  it('jobs submit --wait prints progress on stderr and the job on stdout', async () => {
    const r = await run(['jobs', 'submit', '--model', 'add', '--input', INPUT, '--wait']);
    expect(r.stderr).toBe('job job-1 queued\njob job-1 running on n-3f9a\njob job-1 completed on n-3f9a\n');
    expect(r.stdout).toMatch(/^output y:\s+float32\[1,2\] \[1\.5, 2\]$/m);
  });

  it('jobs submit --kind generate sends SubmitJobRequest.generate', async () => {
    const r = await run(['jobs', 'submit', '--kind', 'generate', '--prompt', 'hello', '--max-tokens', '16']);
    expect(r.code).toBe(0);
    expect(r.calls[0]?.submitted[0]).toEqual({ generate: { prompt: 'hello', maxTokens: 16 } });
  });

  it('malformed --input is ORCH-REQ-250, exit 2, and nothing is sent', async () => {
    const r = await run(['jobs', 'submit', '--model', 'add', '--input', '{"x": [']);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')).toHaveLength(2);
    expect(r.stderr).toMatch(/^ORCH-REQ-250 malformed job input: --input: invalid JSON/);
    expect(r.calls.flatMap((c) => c.submitted)).toEqual([]);
  });

  it('an unreadable @file is ORCH-REQ-251, exit 2', async () => {
    const r = await run(['jobs', 'submit', '--model', 'add', '--input', `@${join(dir, 'missing.json')}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ORCH-REQ-251 input file unreadable: /);
  });

  it('bad flag values are ORCH-REQ-253, exit 2', async () => {
    const r = await run(['jobs', 'submit', '--model', 'add', '--input', INPUT, '--priority', 'high']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ORCH-REQ-253 invalid command-line arguments: --priority: /);
    const missing = await run(['jobs', 'submit', '--input', INPUT]);
    expect(missing.stderr).toMatch(/--model is required/);
  });

  it('an unknown command or option is a usage error: one ORCH-STATE-705 line, exit 2', async () => {
    const unknownCommand = await run(['jobs', 'frobnicate']);
    expect(unknownCommand.code).toBe(2);
    expect(unknownCommand.stderr).toMatch(/^ORCH-STATE-705 command line not understood: unknown command 'frobnicate' — [^\n]*--help[^\n]*\n$/);
    const unknownOption = await run(['nodes', 'list', '--bogus']);
    expect(unknownOption.code).toBe(2);
    expect(unknownOption.stderr).toMatch(/^ORCH-STATE-705 command line not understood: unknown option '--bogus' — [^\n]*\n$/);
    expect((await run(['--help'])).code).toBe(0);
  });

  it('--address with a port out of range is ORCH-STATE-703, exit 2, before anything is sent', async () => {
    const r = await run(['nodes', 'list', '--address', '127.0.0.1:99999']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ORCH-STATE-703 invalid orchestrator configuration: address \(from flag, env CONCLAVE_ADDRESS\): must be HOST:PORT with a port from 1 to 65535/);
    expect(r.calls).toEqual([]);
  });

  it('a server error prints its code and message, exit 1', async () => {
    const { ControlCallError } = await import('./control-calls.js');
    const r = await run(['jobs', 'get', 'j-9'], { failWith: new ControlCallError('NOT_FOUND', 'ORCH-JOB-801', 'job not found: j-9') });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('ORCH-JOB-801 job not found: j-9\n');
  });

  it('an unreachable orchestrator names the address, exit 1', async () => {
    const r = await run(['nodes', 'list', '--address', '10.1.2.3:7400'], {
      failWith: new ConclaveError('ORCH-NET-650', { detail: '10.1.2.3:7400: connect ECONNREFUSED' }),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ORCH-NET-650 orchestrator unreachable: 10\.1\.2\.3:7400: connect ECONNREFUSED — /);
  });

  it('the address comes from --address, then CONCLAVE_ADDRESS, then 127.0.0.1:7400', async () => {
    expect((await run(['nodes', 'list'])).calls[0]?.address).toBe('127.0.0.1:7400');
    const env = { CONCLAVE_ADDRESS: 'env-host:7500' };
    expect((await run(['nodes', 'list'], { env })).calls[0]?.address).toBe('env-host:7500');
    expect((await run(['nodes', 'list', '--address', 'flag-host:7600'], { env })).calls[0]?.address).toBe('flag-host:7600');
    const bad = await run(['nodes', 'list', '--address', 'no-port']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^ORCH-STATE-703 /);
  });
});

describe('orchestrator CLI: jobs list, nodes get, models remove, --version', () => {
  const queuedJob = job({
    id: 'job-q', createdAtMs: Date.now() - 5_000, requirements: { accelerator: 'hailo', capability: '', preferAccelerator: '' }, waiting: 'no node offers accelerator "hailo"',
  });
  const failedJob = job({
    id: 'job-f', state: 'JOB_STATE_FAILED', node: 'n-3f9a', attempts: 5, runMs: 12.34, createdAtMs: Date.now() - 60_000,
    error: { code: 'ORCH-JOB-804', message: 'job failed after its last attempt', status: 'UNAVAILABLE', retryable: false },
  });

  it('jobs list prints a table, newest first as sent, with why a queued job waits and a failed one\'s code', async () => {
    const r = await run(['jobs', 'list'], { setup: (fake) => (fake.jobPages = [[queuedJob, failedJob]]) });
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+STATE\s+KIND\s+MODEL\s+NODE\s+ATTEMPTS\s+AGE\s+RUN\s+NOTE$/);
    expect(lines[1]).toMatch(/^job-q\s+queued\s+infer\s+add\s+-\s+0\s+5s\s+-\s+no node offers accelerator "hailo"$/);
    expect(lines[2]).toMatch(/^job-f\s+failed\s+infer\s+add\s+n-3f9a\s+5\s+1m\s+12\.3ms\s+ORCH-JOB-804$/);
    expect(lines).toHaveLength(3);
    expect(r.calls[0]?.listRequests).toEqual([{ limit: 50 }]);
    expect(r.stderr).toBe('');
  });

  it('jobs list --json prints one job a line, with its requirements and waiting', async () => {
    const r = await run(['jobs', 'list', '--json'], { setup: (fake) => (fake.jobPages = [[queuedJob, failedJob]]) });
    const lines = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      expect.objectContaining({ id: 'job-q', state: 'queued', requirements: { accelerator: 'hailo', preferAccelerator: '', capability: '' }, waiting: 'no node offers accelerator "hailo"' }),
      expect.objectContaining({ id: 'job-f', state: 'failed', requirements: null, waiting: '', error: expect.objectContaining({ code: 'ORCH-JOB-804' }) as unknown }),
    ]);
  });

  it('jobs list sends the filters and follows next_page_token until --limit jobs are in', async () => {
    const pages = [[job({ id: 'a' }), job({ id: 'b' })], [], [job({ id: 'c' }), job({ id: 'd' })], [job({ id: 'e' })]];
    const r = await run(['jobs', 'list', '--state', 'queued', '--model', 'add', '--node', 'pi-01', '--limit', '3', '--json'], {
      setup: (fake) => (fake.jobPages = pages),
    });
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['a', 'b', 'c', 'd']);
    // A short (even empty) page with a token goes on; each asks only for what is still missing.
    expect(r.calls[0]?.listRequests).toEqual([
      { state: 'queued', model: 'add', node: 'pi-01', limit: 3 },
      { state: 'queued', model: 'add', node: 'pi-01', limit: 1, pageToken: '1' },
      { state: 'queued', model: 'add', node: 'pi-01', limit: 1, pageToken: '2' },
    ]);
    expect(r.stderr).toBe('4 jobs shown (--limit 3); there may be more\n');
  });

  it('jobs list says so when nothing matches', async () => {
    expect((await run(['jobs', 'list', '--state', 'running'])).stdout).toBe('no jobs match\n');
    expect((await run(['jobs', 'list'])).stdout).toMatch(/^no jobs; submit one with/);
  });

  it('refuses a malformed --state or --limit with ORCH-REQ-253, exit 2, before anything is sent', async () => {
    for (const argv of [['--state', 'done'], ['--limit', '0'], ['--limit', 'ten'], ['--limit', '10001'], ['--limit', '2.5']]) {
      const r = await run(['jobs', 'list', ...argv]);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^ORCH-REQ-253 invalid command-line arguments: ${argv[0]}: `));
      expect(r.calls).toEqual([]);
    }
  });

  it('an unknown --node is the orchestrator\'s NOT_FOUND, printed with its code, exit 1', async () => {
    const { ControlCallError } = await import('./control-calls.js');
    const r = await run(['jobs', 'list', '--node', 'nope'], { failWith: new ControlCallError('NOT_FOUND', 'ORCH-SCHED-854', 'no node with this id or name: "nope"') });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('ORCH-SCHED-854 no node with this id or name: "nope"\n');
  });

  it('jobs get shows what the job requires and why it waits', async () => {
    const r = await run(['jobs', 'get', 'job-q'], {
      setup: (fake) => {
        fake.getJob = async () => queuedJob;
      },
    });
    expect(r.stdout).toMatch(/^requires:\s+accelerator hailo$/m);
    expect(r.stdout).toMatch(/^waiting:\s+no node offers accelerator "hailo"$/m);
  });

  it('nodes get prints every field, the log spool included; --json the NodeInfo', async () => {
    const r = await run(['nodes', 'get', 'pi-01']);
    expect(r.code).toBe(0);
    expect(r.calls[0]?.admin).toEqual([['getNode', 'pi-01']]);
    for (const line of [
      /^id:\s+n-3f9a$/m, /^name:\s+pi-01$/m, /^status:\s+accepted$/m, /^fingerprint:\s+SHA256:JPbt/m, /^state:\s+connected$/m,
      /^address:\s+10\.0\.0\.5$/m, /^slots:\s+1\/4 running$/m, /^backends:\s+cpu$/m, /^backend active:\s+cpu$/m, /^features:\s+-$/m,
      /^cpu cores:\s+4$/m, /^memory:\s+2\.0 GiB used of 8\.0 GiB$/m, /^loaded models:\s+add$/m, /^models on disk:\s+add$/m,
      /^clock offset:\s+3 ms$/m, /^log spool:\s+3\.0 MiB$/m, /^logs dropped:\s+12$/m,
    ]) expect(r.stdout).toMatch(line);
    const json = JSON.parse((await run(['nodes', 'get', 'n-3f9a', '--json'])).stdout) as Record<string, unknown>;
    expect(json).toMatchObject({ id: 'n-3f9a', logSpoolBytes: 3 * 1024 * 1024, logDroppedTotal: 12, memoryBytes: 8 * 1024 ** 3 });
  });

  it('models remove sends --force only when given, and prints what was removed', async () => {
    const plain = await run(['models', 'remove', 'add']);
    expect(plain.code).toBe(0);
    expect(plain.calls[0]?.admin).toEqual([['removeModel', { name: 'add', force: false }]]);
    expect(plain.stdout).toMatch(/^removed:\s+add$/m);
    const forced = await run(['models', 'remove', 'add', '--force', '--json']);
    expect(forced.calls[0]?.admin).toEqual([['removeModel', { name: 'add', force: true }]]);
    expect(JSON.parse(forced.stdout)).toMatchObject({ name: 'add', sha256: MODEL.sha256 });
  });

  it('--version prints the version in package.json and exits 0', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${version}\n`);
    expect(r.calls).toEqual([]);
  });
});

describe('orchestrator CLI: start', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-cli-start-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts with the defaults, closes on the signal and exits 0', async () => {
    let closed = false;
    const r = await run(['start'], {
      deps: {
        startOrchestrator: async (o) => {
          expect(o).toMatchObject({ grpcHost: '0.0.0.0', grpcPort: 7400, httpPort: 7401 });
          expect(o.redisUrl).toBeUndefined();
          expect(o.dataDir).toBe(join(process.cwd(), '.conclave/orchestrator'));
          return { address: '127.0.0.1:7400', httpPort: 7401, fingerprint: 'SHA256:fake', close: async () => { closed = true; } };
        },
      },
    });
    expect(r.code).toBe(0);
    expect(closed).toBe(true);
    // Its one line on stdout: the readiness line, with what the started orchestrator reported.
    expect(r.stdout.split('\n').filter((l) => l !== '').map(parseReadinessLine)).toEqual([
      { role: 'orchestrator', grpc: '127.0.0.1:7400', httpPort: 7401, tls: false, fingerprint: 'SHA256:fake' },
    ]);
  });

  it('--help shows the defaults start really uses', async () => {
    // Commander wraps the help to the terminal width: compare it with whitespace collapsed.
    const help = (await run(['start', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(help).toMatch(/--grpc-host <host> [^-]*\(default 0\.0\.0\.0;/);
    expect(help).toMatch(/--http-host <host> [^-]*\(default 127\.0\.0\.1;/);
    expect(help).toMatch(/--token-ttl <duration> .*\(default 1h;/);
    const r = await run(['start']);
    expect(r.started[0]).toMatchObject({ grpcHost: '0.0.0.0', httpHost: '127.0.0.1' });
  });

  it('holds the data dir before it starts, and lets go after the close', async () => {
    const events: string[] = [];
    const r = await run(['start', '--data-dir', join(dir, 'held')], {
      deps: {
        lockDataDir: async (dataDir) => {
          events.push(`lock ${dataDir}`);
          return { release: async () => void events.push('release') };
        },
        startOrchestrator: async () => {
          events.push('start');
          return { address: '127.0.0.1:1', httpPort: 2, fingerprint: 'SHA256:fake', close: async () => void events.push('close') };
        },
      },
    });
    expect(r.code).toBe(0);
    expect(events).toEqual([`lock ${join(dir, 'held')}`, 'start', 'close', 'release']);
  });

  it('a data dir held by another process is its one coded line, exit 1, and nothing starts', async () => {
    const r = await run(['start'], {
      deps: {
        lockDataDir: () => Promise.reject(new ConclaveError('ORCH-STATE-704', { detail: 'x is held by orchestrator pid 42' })),
      },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ORCH-STATE-704 data dir in use by another process: x is held by orchestrator pid 42 — [^\n]*\n$/);
    expect(r.started).toEqual([]);
  });

  it('a start failure on bad input exits 2, any other 1', async () => {
    const tls = await run(['start'], { deps: { startOrchestrator: () => Promise.reject(new ConclaveError('ORCH-AUTH-557', { detail: 'junk' })) } });
    expect(tls.code).toBe(2);
    expect(tls.stderr).toMatch(/^ORCH-AUTH-557 TLS certificate or key unusable: junk — /);
    const port = await run(['start'], { deps: { startOrchestrator: () => Promise.reject(new ConclaveError('ORCH-NET-605', { detail: 'HTTP 127.0.0.1:7401' })) } });
    expect(port.code).toBe(1);
    const uncoded = await run(['start'], { deps: { startOrchestrator: () => Promise.reject(new RangeError('boom')) } });
    expect(uncoded.stderr).toBe(`ORCH-STATE-707 unexpected orchestrator failure: boom — ${'An unexpected failure with no code of its own; the message carries its cause. Fix what it names, or report it with the log.'}\n`);
  });

  it('takes flags over env over the YAML file', async () => {
    const file = join(dir, 'orchestrator.yaml');
    await writeFile(file, 'grpcPort: 9001\nhttpPort: 9002\ndataDir: /from/file\nredisUrl: redis://file:6379\n');
    const env = { CONCLAVE_HTTP_PORT: '8002', CONCLAVE_DATA_DIR: '/from/env', CONCLAVE_CONFIG: file };
    const r = await run(['start', '--data-dir', '/from/flag'], { env });
    expect(r.code).toBe(0);
    expect(r.started[0]).toMatchObject({ grpcPort: 9001, httpPort: 8002, dataDir: '/from/flag', redisUrl: 'redis://file:6379' });
    const explicit = await run(['start', '--config', file, '--grpc-port', '0'], { env: {} });
    expect(explicit.started[0]).toMatchObject({ grpcPort: 0, httpPort: 9002, dataDir: '/from/file' });
  });

  it('an invalid value is ORCH-STATE-703 naming the key and its env var, exit 2', async () => {
    const r = await run(['start', '--grpc-port', 'abc']);
    expect(r.code).toBe(2);
    expect(r.started).toEqual([]);
    expect(r.stderr).toMatch(/^ORCH-STATE-703 invalid orchestrator configuration: grpcPort \(from flag, env CONCLAVE_GRPC_PORT\)/);
  });

  it('a startup failure prints one coded line with the recovery and exits 1', async () => {
    const r = await run(['start'], {
      deps: {
        startOrchestrator: async () => {
          throw new ConclaveError('ORCH-STATE-701', { detail: 'not on PATH' });
        },
      },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ORCH-STATE-701 redis-server not found: not on PATH — Install Redis \(`apt-get install redis-server`/);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });
});

describe('orchestrator CLI: join tokens and node approval', () => {
  it('token create --json prints {join, expires} and sends the --ttl in seconds', async () => {
    const r = await run(['token', 'create', '--ttl', '30m', '--json']);
    expect(r.code).toBe(0);
    expect(r.calls[0]?.admin).toEqual([['createJoinToken', 1800]]);
    expect(JSON.parse(r.stdout)).toEqual({ join: JOIN, expires: new Date(CREATED_AT_MS + 1_800_000).toISOString() });
    expect(r.calls[0]?.closed).toBe(true);
  });

  it("token create without --ttl asks for the orchestrator's default", async () => {
    const r = await run(['token', 'create']);
    expect(r.code).toBe(0);
    expect(r.calls[0]?.admin).toEqual([['createJoinToken', 0]]);
    expect(r.stdout).toMatch(/^id:\s+3f9a1c27d0ab$/m);
    expect(r.stdout).toMatch(/^expires:\s+2026-11-27T11:00:00\.000Z \(valid 1h, single use\)$/m);
    expect(r.stdout).toContain(`join:    ${JOIN}\n`);
    expect(r.stdout).toContain(`node-agent start --join '${JOIN}' --data-dir `);
  });

  it('parses durations: 1h30m, 7d; refuses a bare number or a unit it does not know (exit 2)', async () => {
    expect((await run(['token', 'create', '--ttl', '1h30m'])).calls[0]?.admin).toEqual([['createJoinToken', 5400]]);
    expect((await run(['token', 'create', '--ttl', '7d'])).calls[0]?.admin).toEqual([['createJoinToken', 604_800]]);
    for (const ttl of ['90', '1w', '0s', '-1h']) {
      const bad = await run(['token', 'create', '--ttl', ttl]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/^ORCH-REQ-253 invalid command-line arguments: --ttl: /);
      expect(bad.calls).toEqual([]);
    }
  });

  it('token list shows each token with one state word; --json has the fields', async () => {
    const now = CREATED_AT_MS + 1000;
    const realNow = Date.now;
    Date.now = () => now;
    try {
      const r = await run(['token', 'list']);
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^ID\s+STATE\s+CREATED\s+EXPIRES\s+USED BY$/);
      expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 2).join(' '))).toEqual([
        '3f9a1c27d0ab active',
        'aaaaaaaaaaaa used',
        'bbbbbbbbbbbb revoked',
        'cccccccccccc expired',
      ]);
      expect(lines[2]).toMatch(/\sn-3f9a$/);
      const json = JSON.parse((await run(['token', 'list', '--json'])).stdout) as Array<Record<string, unknown>>;
      expect(json[1]).toEqual({
        id: 'aaaaaaaaaaaa',
        state: 'used',
        createdAtMs: CREATED_AT_MS,
        expiresAtMs: CREATED_AT_MS + 3_600_000,
        used: true,
        revoked: false,
        usedBy: 'n-3f9a',
      });
    } finally {
      Date.now = realNow;
    }
  });

  it('token revoke ID revokes that token', async () => {
    const r = await run(['token', 'revoke', 'abcdefabcdef']);
    expect(r.code).toBe(0);
    expect(r.calls[0]?.admin).toEqual([['revokeJoinToken', 'abcdefabcdef']]);
    expect(r.stdout).toMatch(/^state:\s+revoked$/m);
    expect((await run(['token', 'revoke'])).code).toBe(2);
  });

  it('nodes approve and nodes revoke print the node with its new status', async () => {
    const approved = await run(['nodes', 'approve', 'n-1']);
    expect(approved.code).toBe(0);
    expect(approved.calls[0]?.admin).toEqual([['approveNode', 'n-1']]);
    expect(approved.stdout).toMatch(/^status:\s+accepted$/m);
    expect(approved.stdout).toMatch(/^fingerprint:\s+SHA256:/m);
    const revoked = await run(['nodes', 'revoke', 'n-1', '--json']);
    expect(revoked.calls[0]?.admin).toEqual([['revokeNode', 'n-1']]);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ id: 'n-1', status: 'revoked' });
  });

  it('nodes drain and nodes undrain call the Control API and show the node as draining, then not', async () => {
    const drained = await run(['nodes', 'drain', 'n-1']);
    expect(drained.code).toBe(0);
    expect(drained.calls[0]?.admin).toEqual([['drainNode', 'n-1']]);
    expect(drained.stdout).toMatch(/^state:\s+connected, draining$/m);
    expect(drained.stdout).toMatch(/^running:\s+1$/m);
    const undrained = await run(['nodes', 'undrain', 'n-1', '--json']);
    expect(undrained.calls[0]?.admin).toEqual([['undrainNode', 'n-1']]);
    expect(JSON.parse(undrained.stdout)).toMatchObject({ id: 'n-1', draining: false, memoryUsedBytes: 2 * 1024 ** 3, clockOffsetMs: 3 });
    expect((await run(['nodes', 'drain'])).code).toBe(2);
  });

  it('a server refusal of the operator token prints its code, exit 1', async () => {
    const { ControlCallError } = await import('./control-calls.js');
    const r = await run(['token', 'create'], {
      failWith: new ControlCallError('UNAUTHENTICATED', 'ORCH-AUTH-553', 'operator token missing or wrong: …'),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ORCH-AUTH-553 operator token missing or wrong/);
  });
});

describe('orchestrator CLI: operator token and TLS for client commands', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'conclave-cli-token-'));
    await mkdir(join(dir, 'explicit'), { recursive: true });
    await writeFile(join(dir, 'explicit', 'operator-token'), 'from-explicit-dir\n', { mode: 0o600 });
    await mkdir(join(dir, 'cwd', '.conclave', 'local', 'orchestrator'), { recursive: true });
    await writeFile(join(dir, 'cwd', '.conclave', 'local', 'orchestrator', 'operator-token'), 'from-local-fleet\n', { mode: 0o600 });
    await writeFile(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('takes --token, then CONCLAVE_OPERATOR_TOKEN, then <data-dir>/operator-token', async () => {
    const env = { CONCLAVE_OPERATOR_TOKEN: 'from-env' };
    const cwd = join(dir, 'cwd');
    const tokenOf = async (argv: string[], e: Record<string, string> = {}) =>
      (await run(argv, { env: e, cwd })).calls[0]?.options.operatorToken;
    expect(await tokenOf(['nodes', 'list', '--token', 'from-flag'], env)).toBe('from-flag');
    expect(await tokenOf(['nodes', 'list', '--data-dir', join(dir, 'explicit')], env)).toBe('from-env');
    expect(await tokenOf(['nodes', 'list', '--data-dir', join(dir, 'explicit')])).toBe('from-explicit-dir');
    expect(await tokenOf(['jobs', 'get', 'j-1', '--data-dir', join(dir, 'explicit')])).toBe('from-explicit-dir');
    expect(await tokenOf(['jobs', 'submit', '--model', 'add', '--input', INPUT, '--token', 'from-flag'])).toBe('from-flag');
  });

  it('without --data-dir, reads ./.conclave/orchestrator, then ./.conclave/local/orchestrator', async () => {
    const cwd = join(dir, 'cwd');
    expect((await run(['token', 'list'], { cwd })).calls[0]?.options.operatorToken).toBe('from-local-fleet');
    await mkdir(join(cwd, '.conclave', 'orchestrator'), { recursive: true });
    await writeFile(join(cwd, '.conclave', 'orchestrator', 'operator-token'), 'from-default\n', { mode: 0o600 });
    expect((await run(['token', 'list'], { cwd })).calls[0]?.options.operatorToken).toBe('from-default');
    // A --data-dir without the file means no token: the orchestrator says ORCH-AUTH-553.
    const none = await run(['token', 'list', '--data-dir', join(dir, 'nowhere')], { cwd });
    expect(none.calls[0]?.options.operatorToken).toBeUndefined();
    expect((await run(['token', 'list'])).calls[0]?.options).toEqual({});
  });

  it('--tls-ca reads the CA for the channel; an unreadable one is ORCH-AUTH-556, exit 2', async () => {
    const r = await run(['nodes', 'list', '--tls-ca', join(dir, 'ca.pem')]);
    expect(r.code).toBe(0);
    expect(r.calls[0]?.options.tlsCa?.toString()).toBe('-----BEGIN CERTIFICATE-----\n');
    const viaEnv = await run(['nodes', 'list'], { env: { CONCLAVE_TLS_CA: join(dir, 'ca.pem') } });
    expect(viaEnv.calls[0]?.options.tlsCa).toBeInstanceOf(Buffer);
    const missing = await run(['nodes', 'list', '--tls-ca', join(dir, 'missing.pem')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^ORCH-AUTH-556 TLS file unreadable: .*missing\.pem: ENOENT/);
    expect(missing.calls).toEqual([]);
  });
});

describe('orchestrator CLI: start with enrollment and TLS settings', () => {
  it('maps --approval, --advertise-address, --tls-cert/--tls-key and --token-ttl into the options', async () => {
    const r = await run([
      'start',
      '--approval', 'manual',
      '--advertise-address', 'orch.example:7400',
      '--tls-cert', '/etc/conclave/cert.pem',
      '--tls-key', '/etc/conclave/key.pem',
      '--token-ttl', '30m',
    ]);
    expect(r.code).toBe(0);
    expect(r.started[0]).toMatchObject({
      approval: 'manual',
      advertiseAddress: 'orch.example:7400',
      tls: { certPath: '/etc/conclave/cert.pem', keyPath: '/etc/conclave/key.pem' },
      defaultTokenTtlMs: 1_800_000,
    });
  });

  it('defaults: approval auto, token TTL 1h; no advertise address, TLS or operator token (found at start)', async () => {
    const r = await run(['start']);
    expect(r.started[0]?.approval).toBe('auto');
    expect(r.started[0]?.defaultTokenTtlMs).toBe(3_600_000);
    expect(r.started[0]).not.toHaveProperty('advertiseAddress');
    expect(r.started[0]).not.toHaveProperty('tls');
    expect(r.started[0]).not.toHaveProperty('operatorToken');
  });

  it("the defaults of start are startOrchestrator's own", async () => {
    const started = (await run(['start'])).started[0];
    if (!started) throw new Error('start did not start');
    const { dataDir, logger, logTap } = started;
    // The tap is the CLI's own (the store reads the orchestrator's records there), not a default.
    expect(logTap?.level).toBe('info');
    expect(resolveOrchestratorOptions(started)).toEqual(resolveOrchestratorOptions({ dataDir, logger, ...(logTap ? { logTap } : {}) }));
  });

  it('reads CONCLAVE_APPROVAL, CONCLAVE_TOKEN_TTL and CONCLAVE_OPERATOR_TOKEN from the environment', async () => {
    const r = await run(['start'], { env: { CONCLAVE_APPROVAL: 'manual', CONCLAVE_TOKEN_TTL: '7d', CONCLAVE_OPERATOR_TOKEN: 'op-token-from-env-123' } });
    expect(r.started[0]).toMatchObject({ approval: 'manual', defaultTokenTtlMs: 7 * 86_400_000, operatorToken: 'op-token-from-env-123' });
  });

  it('refuses a bad approval mode, advertise address or TTL, and a cert without its key (exit 2)', async () => {
    expect((await run(['start', '--approval', 'sometimes'])).code).toBe(2);
    const address = await run(['start', '--advertise-address', 'no-port']);
    expect(address.code).toBe(2);
    expect(address.stderr).toMatch(/^ORCH-STATE-703 .*advertiseAddress \(from flag, env CONCLAVE_ADVERTISE_ADDRESS\)/);
    const ttl = await run(['start', '--token-ttl', '1 hour']);
    expect(ttl.stderr).toMatch(/tokenTtl \(from flag, env CONCLAVE_TOKEN_TTL\)/);
    const tls = await run(['start', '--tls-cert', '/etc/cert.pem']);
    expect(tls.code).toBe(2);
    expect(tls.stderr).toMatch(/^ORCH-STATE-703 .*tlsCert and tlsKey go together/);
    expect(tls.started).toEqual([]);
  });
});
