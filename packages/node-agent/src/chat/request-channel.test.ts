import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConclaveError, nullLogger } from '@conclave/common';
import type { ChatReply__Output, ChatRequest, NodeMessage } from '@conclave/protocol';
import { RequestChannel, noReplyReason } from './request-channel.js';

function transport() {
  const frames: ChatRequest[][] = [];
  const t = {
    connected: true,
    frames,
    send(message: NodeMessage): boolean {
      if (!t.connected) return false;
      if (message.chat?.requests) frames.push(message.chat.requests);
      return true;
    },
  };
  return t;
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
const roomReply = (requestId: number, name: string): ChatReply__Output => ({ requestId, outcome: 'room', room: { name, epoch: 'e', headSeq: 0, members: [], createdAtMs: 0, createdBy: '', firstSeq: 0 } });

afterEach(() => {
  vi.useRealTimers();
});

describe('RequestChannel', () => {
  it('sends every request of one tick in one frame, with increasing ids', async () => {
    const t = transport();
    const channel = new RequestChannel({ transport: t, logger: nullLogger });
    for (let i = 0; i < 100; i += 1) channel.issue({ post: { room: 'fleet', text: `m${i}`, clientMsgId: `c${i}` } }, () => undefined);
    expect(t.frames).toHaveLength(0);
    await turn();
    expect(t.frames).toHaveLength(1);
    expect(t.frames[0]!.map((r) => Number(r.requestId))).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(t.frames[0]!.map((r) => r.post?.text)).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
  });

  it('cuts a tick\'s requests into frames of at most frameBytes', async () => {
    const t = transport();
    const channel = new RequestChannel({ transport: t, logger: nullLogger, frameBytes: 10_000 });
    for (let i = 0; i < 10; i += 1) channel.issue({ post: { room: 'fleet', text: 'x'.repeat(1000), clientMsgId: `c${i}` } }, () => undefined);
    await turn();
    expect(t.frames.length).toBeGreaterThan(1);
    expect(t.frames.flat().map((r) => Number(r.requestId))).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    for (const frame of t.frames) expect(frame.reduce((n, r) => n + 3 * (r.post?.text?.length ?? 0), 0)).toBeLessThanOrEqual(10_000);
  });

  it('matches replies to requests by id, in whatever order they come, and drops a reply for none', async () => {
    const t = transport();
    const channel = new RequestChannel({ transport: t, logger: nullLogger });
    const a = channel.request({ join: { room: 'a' } });
    const b = channel.request({ join: { room: 'b' } });
    await turn();
    const [ra, rb] = t.frames[0]!.map((r) => Number(r.requestId));
    channel.receive({ replies: [roomReply(rb!, 'b'), roomReply(999, 'nobody'), roomReply(ra!, 'a')] });
    expect((await a).room?.name).toBe('a');
    expect((await b).room?.name).toBe('b');
    expect(channel.size).toBe(0);
  });

  it('fails a request with no reply within the timeout with CHAT-NET-601 (timeout)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const t = transport();
    const channel = new RequestChannel({ transport: t, logger: nullLogger, timeoutMs: 10_000 });
    const pending = channel.request({ context: { room: 'fleet' } });
    const caught = pending.catch((err: unknown) => err);
    vi.advanceTimersByTime(9_999);
    expect(channel.size).toBe(1);
    vi.advanceTimersByTime(2);
    const err = await caught;
    expect(err).toBeInstanceOf(ConclaveError);
    expect((err as ConclaveError).code).toBe('CHAT-NET-601');
    expect(noReplyReason(err)).toBe('timeout');
    expect((err as ConclaveError).data['room']).toBe('fleet');
    expect(channel.size).toBe(0);
  });

  it('refuses at once while offline (CHAT-NET-601) and beyond the requests in flight (CHAT-REQ-208)', async () => {
    const t = transport();
    const channel = new RequestChannel({ transport: t, logger: nullLogger, maxInFlight: 3 });
    for (let i = 0; i < 3; i += 1) channel.issue({ join: { room: `r${i}` } }, () => undefined);
    await expect(channel.request({ join: { room: 'r4' } })).rejects.toMatchObject({ code: 'CHAT-REQ-208' });
    t.connected = false;
    const offline = await channel.request({ claim: { room: 'fleet', resource: 'x', ttlMs: 1000 } }).catch((err: unknown) => err);
    expect(offline).toMatchObject({ code: 'CHAT-NET-601' });
    expect(noReplyReason(offline)).toBe('offline');
  });

  it('fails everything in flight when the session ends, and a frame the link could not send', async () => {
    const t = transport();
    const channel = new RequestChannel({ transport: t, logger: nullLogger });
    const sent = channel.request({ join: { room: 'a' } }).catch((err: unknown) => err);
    await turn();
    const queued = channel.request({ join: { room: 'b' } }).catch((err: unknown) => err);
    channel.sessionLost();
    expect(noReplyReason(await sent)).toBe('lost');
    expect(noReplyReason(await queued)).toBe('lost');
    // Connected when issued, gone by the time the frame goes: the link refuses it.
    const unsent = channel.request({ join: { room: 'c' } }).catch((err: unknown) => err);
    t.connected = false;
    await turn();
    expect(noReplyReason(await unsent)).toBe('offline');
    expect(channel.size).toBe(0);
  });
});
