import { describe, expect, it } from 'vitest';
import { ConclaveError, nullLogger } from '@conclave/common';
import type { ChatPost, ChatPosted, ChatReply, OrchestratorMessage } from '@conclave/protocol';
import type { ChatApi } from './chat-api.js';
import { NodeChatEndpoint } from './node-chat-endpoint.js';

/** Appends in call order; refuses a chosen client_msg_id retryably once, as Redis reconnecting would. */
function fakeChat(refuseOnce: Set<string>): { chat: ChatApi; log: string[] } {
  const log: string[] = [];
  const chat = {
    join: async () => ({ name: 'fleet' }),
    post: async (_member: unknown, post: ChatPost): Promise<ChatPosted> => {
      const id = post.clientMsgId ?? '';
      if (refuseOnce.delete(id)) throw new ConclaveError('ORCH-STATE-710', { detail: 'Redis is reconnecting' });
      log.push(id);
      return { room: post.room ?? '', seq: log.length, sender: 'n', clientMsgId: id };
    },
  } as unknown as ChatApi;
  return { chat, log };
}

function endpoint(chat: ChatApi): { endpoint: NodeChatEndpoint; replies: () => ChatReply[] } {
  const sent: OrchestratorMessage[] = [];
  const e = new NodeChatEndpoint({
    chat, logger: nullLogger, redisAvailable: () => true,
    session: { id: 'n', name: 'n', isClosed: false, backpressured: false, send: (m) => sent.push(m), drained: () => Promise.resolve() },
  });
  return { endpoint: e, replies: () => sent.flatMap((m) => m.chatReplies?.replies ?? []) };
}

const settle = () => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
const post = (requestId: number, clientMsgId: string) => ({ requestId, op: 'post' as const, post: { room: 'fleet', text: clientMsgId, clientMsgId, resource: '', fence: 0 } });

describe('NodeChatEndpoint', () => {
  it('keeps a node\'s posts in order when one is refused retryably: the ones behind it wait for its resend', async () => {
    const { chat, log } = fakeChat(new Set(['p1']));
    const { endpoint: e, replies } = endpoint(chat);
    await e.start();
    e.receive({ requests: { requests: [post(1, 'p1')] } as never });
    await settle();
    // p2 was already on its way when p1 was refused: it is refused too.
    e.receive({ requests: { requests: [post(2, 'p2')] } as never });
    await settle();
    expect(replies().map((r) => [r.requestId, r.error?.code, r.error?.retryable])).toEqual([[1, 'ORCH-STATE-710', true], [2, 'ORCH-STATE-710', true]]);
    // The node sends them again in its order: both land, p1 first.
    e.receive({ requests: { requests: [post(3, 'p1'), post(4, 'p2')] } as never });
    await settle();
    expect(log).toEqual(['p1', 'p2']);
    expect(replies().slice(2).map((r) => [r.requestId, Number(r.posted?.seq)])).toEqual([[3, 1], [4, 2]]);
  });

  it('answers more requests than its bound with CHAT-REQ-208 and the rest normally', async () => {
    const { chat } = fakeChat(new Set());
    const { endpoint: e, replies } = endpoint(chat);
    // Before start() requests wait; past the bound they are refused at once.
    const many = Array.from({ length: 1_030 }, (_, i) => post(i + 1, `m${i}`));
    e.receive({ requests: { requests: many } as never });
    await settle();
    expect(replies().filter((r) => r.error?.code === 'CHAT-REQ-208')).toHaveLength(6);
    await e.start();
    await settle();
    expect(replies().filter((r) => r.posted)).toHaveLength(1_024);
  });
});
