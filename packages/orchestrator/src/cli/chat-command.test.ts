// `orchestrator chat …` through runOrchestratorCli with a fake Control API: requests, output
// shapes, exit codes (3 for a held claim), and a follow that ends on the operator's signal.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { captureLogger, type ClosableLogger } from '@conclave/common';
import { waitUntil } from '@conclave/testing';
import type {
  ChatClaim, ChatClaimResult__Output, ChatContext__Output, ChatDelivery__Output, ChatMessage__Output, ChatPost, ChatPosted__Output,
  ChatRelease, ChatReleased__Output, ChatRoom__Output,
} from '@conclave/protocol';
import { StringOut } from './cli-io.js';
import { ControlCallError, type ControlCalls, type FollowRoomRequest, type RoomFollow } from './control-calls.js';
import { runOrchestratorCli, type OrchestratorCliDeps } from './orchestrator-program.js';

const AT_MS = Date.UTC(2026, 10, 27, 10, 0, 0);

function chatMessage(seq: number, overrides: Partial<ChatMessage__Output> = {}): ChatMessage__Output {
  return {
    room: 'ops', seq, sender: 'operator', kind: 'text', text: `m${seq}`, atMs: AT_MS + seq, clientMsgId: '', resource: '', fence: 0, ttlMs: 0, senderName: '',
    ...overrides,
  };
}

function chatRoom(name: string, overrides: Partial<ChatRoom__Output> = {}): ChatRoom__Output {
  return { name, epoch: 'e1', headSeq: 0, members: [], createdAtMs: AT_MS, createdBy: 'operator', firstSeq: 0, ...overrides };
}

function chatContext(overrides: Partial<ChatContext__Output> = {}): ChatContext__Output {
  return {
    room: 'ops', epoch: 'e1', headSeq: 3, summary: '', summaryThroughSeq: 0, messages: [chatMessage(2), chatMessage(3)], tokens: 12,
    maxMessages: 50, maxTokens: 2048, ...overrides,
  };
}

const delivery = (messages: ChatMessage__Output[], overrides: Partial<ChatDelivery__Output> = {}): ChatDelivery__Output => ({
  room: 'ops', epoch: 'e1', messages, snapshot: null, resyncReason: '', code: '', ...overrides,
});

async function notUsedHere(): Promise<never> {
  throw new Error('not a chat call');
}

/** The chat half of the Control API, scripted; the job, node and token calls are not used here. */
class FakeChatCalls implements ControlCalls {
  readonly requests: Array<[string, unknown]> = [];
  /** What FollowRoom delivers, in order, before it ends (or, with follow, waits for cancel). */
  deliveries: ChatDelivery__Output[] = [];
  /** With follow: the stream fails with this after its deliveries instead of waiting. */
  followFailure: Error | undefined;
  /** The failure (and the deliveries) come with the first followRoom only, as from a restarted orchestrator. */
  failOnce = false;
  cancelled = 0;
  claimHeld = false;
  failWith: Error | undefined;
  closed = false;

  constructor(readonly address: string) {}

  async createRoom(room: string): Promise<ChatRoom__Output> {
    this.record('createRoom', room);
    return chatRoom(room);
  }
  async listRooms(): Promise<ChatRoom__Output[]> {
    this.record('listRooms', undefined);
    return [chatRoom('fleet', { headSeq: 42, firstSeq: 1, members: ['n-1', 'n-2'], createdBy: 'orchestrator' }), chatRoom('ops')];
  }
  async postMessage(post: ChatPost): Promise<ChatPosted__Output> {
    this.record('postMessage', post);
    return { room: post.room ?? '', seq: 17, sender: 'operator', clientMsgId: post.clientMsgId ?? '', duplicate: false, atMs: AT_MS };
  }
  async claimResource(claim: ChatClaim): Promise<ChatClaimResult__Output> {
    this.record('claimResource', claim);
    const expiresAtMs = AT_MS + Number(claim.ttlMs);
    return this.claimHeld
      ? { ok: false, room: claim.room ?? '', resource: claim.resource ?? '', fence: 0, seq: 9, holder: 'n-1', expiresAtMs, code: 'CHAT-STATE-702' }
      : { ok: true, room: claim.room ?? '', resource: claim.resource ?? '', fence: 7, seq: 18, holder: 'operator', expiresAtMs, code: '' };
  }
  async releaseResource(release: ChatRelease): Promise<ChatReleased__Output> {
    this.record('releaseResource', release);
    return { room: release.room ?? '', resource: release.resource ?? '', fence: Number(release.fence), seq: 19 };
  }
  async getRoomContext(room: string): Promise<ChatContext__Output> {
    this.record('getRoomContext', room);
    return chatContext({ room, summary: 'the deploy was discussed', summaryThroughSeq: 1 });
  }
  followRoom(request: FollowRoomRequest, onDelivery: (delivery: ChatDelivery__Output) => void): RoomFollow {
    this.record('followRoom', request);
    let cancel: () => void = () => undefined;
    const done = new Promise<void>((resolve, reject) => {
      cancel = () => {
        this.cancelled += 1;
        resolve();
      };
      // Deliveries arrive after the call started, as from a stream.
      setImmediate(() => {
        for (const d of this.deliveries) onDelivery(d);
        const failure = this.followFailure;
        if (this.failOnce) {
          this.followFailure = undefined;
          this.deliveries = [];
        }
        if (failure) reject(failure);
        else if (!request.follow) resolve();
      });
    });
    return { done, cancel: () => cancel() };
  }
  submitJob = notUsedHere;
  getJob = notUsedHere;
  listJobs = notUsedHere;
  cancelJob = notUsedHere;
  watchJob = notUsedHere;
  listNodes = notUsedHere;
  getNode = notUsedHere;
  listModels = notUsedHere;
  removeModel = notUsedHere;
  tailLogs = (): never => {
    throw new Error('not a chat call');
  };
  addModel = notUsedHere;
  createJoinToken = notUsedHere;
  listJoinTokens = notUsedHere;
  revokeJoinToken = notUsedHere;
  approveNode = notUsedHere;
  revokeNode = notUsedHere;
  drainNode = notUsedHere;
  undrainNode = notUsedHere;
  close(): void {
    this.closed = true;
  }
  private record(op: string, request: unknown): void {
    if (this.failWith) throw this.failWith;
    this.requests.push([op, request]);
  }
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  calls: FakeChatCalls[];
  /** How often the command asked for the interrupt signal. */
  interruptAsks: number;
}

async function run(
  argv: string[],
  options: { setup?: (calls: FakeChatCalls) => void; interrupt?: Promise<string>; deps?: Partial<OrchestratorCliDeps> } = {},
): Promise<Run> {
  const stdout = new StringOut();
  const stderr = new StringOut();
  const calls: FakeChatCalls[] = [];
  let interruptAsks = 0;
  const code = await runOrchestratorCli(argv, {
    env: {},
    io: { stdout, stderr },
    connect: (address) => {
      const fake = new FakeChatCalls(address);
      options.setup?.(fake);
      calls.push(fake);
      return fake;
    },
    startOrchestrator: () => Promise.reject(new Error('not started here')),
    shutdownSignal: () => new Promise<string>(() => undefined),
    interruptSignal: () => {
      interruptAsks += 1;
      return options.interrupt ?? new Promise<string>(() => undefined);
    },
    createLogger: () => Object.assign(captureLogger('ORCH').logger, { close: async () => {} }) as ClosableLogger,
    cwd: join(tmpdir(), 'conclave-cli-no-such-dir'),
    ...options.deps,
  });
  return { code, stdout: stdout.text, stderr: stderr.text, calls, interruptAsks };
}

const jsonLines = (text: string): unknown[] => text.trimEnd().split('\n').map((line) => JSON.parse(line) as unknown);
const requestsOf = (r: Run) => r.calls.flatMap((c) => c.requests);

describe('orchestrator chat: rooms, create, send, context', () => {
  it('chat rooms --json is an array of rooms; without it an aligned table', async () => {
    const json = await run(['chat', 'rooms', '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([
      { name: 'fleet', epoch: 'e1', headSeq: 42, firstSeq: 1, members: ['n-1', 'n-2'], createdAtMs: AT_MS, createdBy: 'orchestrator' },
      { name: 'ops', epoch: 'e1', headSeq: 0, firstSeq: 0, members: [], createdAtMs: AT_MS, createdBy: 'operator' },
    ]);
    const table = await run(['chat', 'rooms']);
    expect(table.stdout.split('\n').slice(0, 2)).toEqual([
      'NAME   HEAD  FIRST  MEMBERS  CREATED BY    CREATED',
      'fleet    42      1        2  orchestrator  2026-11-27T10:00:00.000Z',
    ]);
    expect(json.calls[0]?.closed).toBe(true);
  });

  it('chat create ROOM --json prints the room; one that exists is the server\'s CHAT-REQ-206, exit 1', async () => {
    const created = await run(['chat', 'create', 'ops', '--json']);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ name: 'ops', headSeq: 0, createdBy: 'operator' });
    expect(requestsOf(created)).toEqual([['createRoom', 'ops']]);

    const exists = await run(['chat', 'create', 'ops'], {
      setup: (c) => (c.failWith = new ControlCallError('ALREADY_EXISTS', 'CHAT-REQ-206', 'room already exists: ops')),
    });
    expect(exists).toMatchObject({ code: 1, stdout: '', stderr: 'CHAT-REQ-206 room already exists: ops\n' });
  });

  it('chat send ROOM TEXT --client-msg-id ID --json prints {room, seq, sender, clientMsgId}', async () => {
    const r = await run(['chat', 'send', 'ops', 'deploy at 10', '--client-msg-id', 'c-1', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ room: 'ops', seq: 17, sender: 'operator', clientMsgId: 'c-1' });
    expect(requestsOf(r)).toEqual([['postMessage', { room: 'ops', text: 'deploy at 10', clientMsgId: 'c-1' }]]);
    const human = await run(['chat', 'send', 'ops', 'hi']);
    expect(human.stdout).toMatch(/^seq:\s+17$/m);
    // Without --client-msg-id the CLI makes one, so that a retried send is appended once.
    expect(requestsOf(human)).toEqual([['postMessage', { room: 'ops', text: 'hi', clientMsgId: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown }]]);
  });

  it('chat context ROOM --json is the window; without it a header and the messages', async () => {
    const json = await run(['chat', 'context', 'ops', '--json']);
    expect(JSON.parse(json.stdout)).toEqual({
      room: 'ops', epoch: 'e1', headSeq: 3, summary: 'the deploy was discussed', summaryThroughSeq: 1, tokens: 12, maxMessages: 50, maxTokens: 2048,
      messages: [
        { room: 'ops', seq: 2, sender: 'operator', kind: 'text', text: 'm2', atMs: AT_MS + 2 },
        { room: 'ops', seq: 3, sender: 'operator', kind: 'text', text: 'm3', atMs: AT_MS + 3 },
      ],
    });
    const human = await run(['chat', 'context', 'ops']);
    expect(human.stdout).toMatch(/^window:\s+2\/50 messages, 12\/2048 tokens$/m);
    expect(human.stdout).toMatch(/^summary:\s+through #1: the deploy was discussed$/m);
    expect(human.stdout.trimEnd().split('\n').slice(-2)).toEqual([
      '#2 2026-11-27T10:00:00.002Z operator text: m2',
      '#3 2026-11-27T10:00:00.003Z operator text: m3',
    ]);
  });

  it('missing arguments and empty text are usage errors, exit 2, and nothing is sent', async () => {
    const missing = await run(['chat', 'send', 'ops']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^ORCH-STATE-705 .*missing required argument 'text'/);
    const empty = await run(['chat', 'send', 'ops', '']);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/^ORCH-REQ-253 .*TEXT is empty/);
    expect([...requestsOf(missing), ...requestsOf(empty)]).toEqual([]);
  });
});

describe('orchestrator chat tail', () => {
  it('--json prints one chatMessageJson a line, claims with their fence, from the start of the log by default', async () => {
    const r = await run(['chat', 'tail', 'ops', '--json'], {
      setup: (c) => {
        c.deliveries = [
          delivery([chatMessage(1), chatMessage(2, { sender: 'n-1', senderName: 'pi-01', clientMsgId: 'k' })]),
          delivery([chatMessage(3, { kind: 'claim', text: '', resource: 'deploy', fence: 4, ttlMs: 30_000 })]),
        ];
      },
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(jsonLines(r.stdout)).toEqual([
      { room: 'ops', seq: 1, sender: 'operator', kind: 'text', text: 'm1', atMs: AT_MS + 1 },
      { room: 'ops', seq: 2, sender: 'n-1', kind: 'text', text: 'm2', atMs: AT_MS + 2, senderName: 'pi-01', clientMsgId: 'k' },
      { room: 'ops', seq: 3, sender: 'operator', kind: 'claim', text: '', atMs: AT_MS + 3, resource: 'deploy', fence: 4, ttlMs: 30_000 },
    ]);
    expect(requestsOf(r)).toEqual([['followRoom', { room: 'ops', afterSeq: 0, epoch: '', follow: false }]]);
    // Without -f the command leaves signals alone.
    expect(r.interruptAsks).toBe(0);
  });

  it('--from SEQ is inclusive: it asks for the messages after SEQ-1', async () => {
    const r = await run(['chat', 'tail', 'ops', '--from', '5']);
    expect(requestsOf(r)).toEqual([['followRoom', { room: 'ops', afterSeq: 4, epoch: '', follow: false }]]);
  });

  it('prints lines through formatChatMessage without --json', async () => {
    const r = await run(['chat', 'tail', 'ops'], {
      setup: (c) => {
        c.deliveries = [delivery([chatMessage(1, { sender: 'n-1', senderName: 'pi-01' }), chatMessage(2, { kind: 'release', text: '', resource: 'deploy', fence: 4 })])];
      },
    });
    expect(r.stdout).toBe('#1 2026-11-27T10:00:00.001Z n-1 (pi-01) text: m1\n#2 2026-11-27T10:00:00.002Z operator release [deploy fence=4]:\n');
  });

  it('a resync prints chatResyncJson first, then the snapshot\'s messages, then the delivery\'s', async () => {
    const snapshot = chatContext({ headSeq: 3, summary: 'earlier: the plan', summaryThroughSeq: 1 });
    const r = await run(['chat', 'tail', 'ops', '--json', '--from', '1'], {
      setup: (c) => {
        c.deliveries = [delivery([chatMessage(4)], { snapshot, resyncReason: 'trimmed', code: 'CHAT-STATE-703' })];
      },
    });
    expect(jsonLines(r.stdout)).toEqual([
      { room: 'ops', kind: 'resync', reason: 'trimmed', code: 'CHAT-STATE-703', headSeq: 3, summary: 'earlier: the plan' },
      expect.objectContaining({ seq: 2 }),
      expect.objectContaining({ seq: 3 }),
      expect.objectContaining({ seq: 4 }),
    ]);
    const human = await run(['chat', 'tail', 'ops'], {
      setup: (c) => {
        c.deliveries = [delivery([], { snapshot, resyncReason: 'epoch', code: 'CHAT-STATE-703' })];
      },
    });
    expect(human.stdout.split('\n').slice(0, 3)).toEqual([
      "-- resynchronised (epoch, CHAT-STATE-703): the room's context up to #3 follows",
      '-- summary through #1: earlier: the plan',
      '#2 2026-11-27T10:00:00.002Z operator text: m2',
    ]);
  });

  it('-f follows until the interrupt signal, then cancels the call and exits 0', async () => {
    let interrupt: (signal: string) => void = () => undefined;
    const fakes: FakeChatCalls[] = [];
    const running = run(['chat', 'tail', 'ops', '-f', '--json'], {
      interrupt: new Promise((resolve) => (interrupt = resolve)),
      setup: (c) => {
        c.deliveries = [delivery([chatMessage(1)])];
        fakes.push(c);
      },
    });
    let finished = false;
    void running.then(() => (finished = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(finished).toBe(false);
    expect(fakes[0]?.cancelled).toBe(0);
    interrupt('SIGINT');
    const r = await running;
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(jsonLines(r.stdout)).toEqual([expect.objectContaining({ seq: 1 })]);
    expect(requestsOf(r)).toEqual([['followRoom', { room: 'ops', afterSeq: 0, epoch: '', follow: true }]]);
    expect(r.calls[0]).toMatchObject({ cancelled: 1, closed: true });
    expect(r.interruptAsks).toBe(1);
  });

  it('-f that the orchestrator ends with an error prints its code, exit 1', async () => {
    const r = await run(['chat', 'tail', 'ops', '-f'], {
      setup: (c) => {
        c.deliveries = [delivery([chatMessage(1)])];
        c.followFailure = new ControlCallError('NOT_FOUND', 'CHAT-REQ-201', 'unknown room: ops');
      },
    });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^#1 /);
    expect(r.stderr).toBe('CHAT-REQ-201 unknown room: ops\n');
  });

  it('-f through an orchestrator restart (UNAVAILABLE) follows again from its last seq and epoch, printing nothing twice', async () => {
    let interrupt: (signal: string) => void = () => undefined;
    const fakes: FakeChatCalls[] = [];
    const running = run(['chat', 'tail', 'ops', '-f', '--json'], {
      interrupt: new Promise((resolve) => (interrupt = resolve)),
      setup: (c) => {
        c.deliveries = [delivery([chatMessage(1), chatMessage(2)])];
        c.followFailure = new ControlCallError('UNAVAILABLE', 'CHAT-NET-601', 'orchestrator unreachable for a chat request: the orchestrator is shutting down');
        c.failOnce = true;
        fakes.push(c);
      },
    });
    await waitUntil(() => fakes.flatMap((c) => c.requests).length >= 2, { timeoutMs: 5_000 });
    interrupt('SIGINT');
    const r = await running;
    expect(r.code).toBe(0);
    expect(requestsOf(r)).toEqual([
      ['followRoom', { room: 'ops', afterSeq: 0, epoch: '', follow: true }],
      ['followRoom', { room: 'ops', afterSeq: 2, epoch: 'e1', follow: true }],
    ]);
    expect(jsonLines(r.stdout).map((m) => (m as { seq: number }).seq)).toEqual([1, 2]);
    expect(r.stderr).toMatch(/^CHAT-NET-601 .*: following again from #3 in 250 ms\n$/);
  });

  it('a --from that is no seq is ORCH-REQ-253, exit 2, and nothing is sent', async () => {
    for (const from of ['0', 'x', '1.5']) {
      const r = await run(['chat', 'tail', 'ops', '--from', from]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^ORCH-REQ-253 .*--from: /);
      expect(r.calls).toEqual([]);
    }
  });
});

describe('orchestrator chat claim and release', () => {
  it('a won claim prints {ok: true, fence, seq} and exits 0; --ttl defaults to 30s and takes 500ms, 2m', async () => {
    const r = await run(['chat', 'claim', 'ops', 'deploy', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      ok: true, fence: 7, seq: 18, room: 'ops', resource: 'deploy', holder: 'operator', expiresAtMs: AT_MS + 30_000,
    });
    expect(requestsOf(r)).toEqual([['claimResource', { room: 'ops', resource: 'deploy', ttlMs: 30_000 }]]);
    for (const [ttl, ttlMs] of [['500ms', 500], ['2m', 120_000], ['1m30s', 90_000]] as const) {
      expect(requestsOf(await run(['chat', 'claim', 'ops', 'deploy', '--ttl', ttl]))).toEqual([['claimResource', { room: 'ops', resource: 'deploy', ttlMs }]]);
    }
    const human = await run(['chat', 'claim', 'ops', 'deploy']);
    expect(human.stdout).toMatch(/^fence:\s+7$/m);
  });

  it('a claim someone else holds prints {ok: false, holder, seq} and exits 3', async () => {
    const r = await run(['chat', 'claim', 'ops', 'deploy', '--json'], { setup: (c) => (c.claimHeld = true) });
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      ok: false, holder: 'n-1', seq: 9, room: 'ops', resource: 'deploy', code: 'CHAT-STATE-702', expiresAtMs: AT_MS + 30_000,
    });
    const human = await run(['chat', 'claim', 'ops', 'deploy'], { setup: (c) => (c.claimHeld = true) });
    expect(human.code).toBe(3);
    expect(human.stdout).toMatch(/^holder:\s+n-1$/m);
  });

  it('a bad --ttl is ORCH-REQ-253, exit 2, and nothing is sent', async () => {
    for (const ttl of ['30', 'soon', '0s', '-1s']) {
      const r = await run(['chat', 'claim', 'ops', 'deploy', '--ttl', ttl]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^ORCH-REQ-253 .*--ttl: /);
      expect(r.calls).toEqual([]);
    }
  });

  it('release --fence N sends the fence and prints the release', async () => {
    const r = await run(['chat', 'release', 'ops', 'deploy', '--fence', '7', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ room: 'ops', resource: 'deploy', fence: 7, seq: 19 });
    expect(requestsOf(r)).toEqual([['releaseResource', { room: 'ops', resource: 'deploy', fence: 7 }]]);
  });

  it('release without --fence, or with one that is no token, is ORCH-REQ-253, exit 2, and nothing is sent', async () => {
    const missing = await run(['chat', 'release', 'ops', 'deploy']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^ORCH-REQ-253 .*--fence is required/);
    expect(missing.calls).toEqual([]);
    for (const fence of ['0', 'seven', '-3']) {
      const r = await run(['chat', 'release', 'ops', 'deploy', '--fence', fence]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^ORCH-REQ-253 .*--fence: /);
      expect(r.calls).toEqual([]);
    }
  });

  it('a stale fence is the server\'s CHAT-STATE-701, exit 1', async () => {
    const r = await run(['chat', 'release', 'ops', 'deploy', '--fence', '6'], {
      setup: (c) => (c.failWith = new ControlCallError('FAILED_PRECONDITION', 'CHAT-STATE-701', 'stale fencing token: fence 6 on deploy')),
    });
    expect(r).toMatchObject({ code: 1, stdout: '', stderr: 'CHAT-STATE-701 stale fencing token: fence 6 on deploy\n' });
  });
});
