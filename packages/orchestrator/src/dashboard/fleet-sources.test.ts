import { describe, expect, it } from 'vitest';
import type { ChatDelivery, ChatMessage, ChatRoom } from '@conclave/protocol';
import type { ChatApi, ChatMember } from '../chat/chat-api.js';
import type { JobListQuery, JobRecord, JobStore } from '../job-store.js';
import { MAX_ROOMS_SHOWN, RECENT_JOBS_READ, chatRoomsOf, jobsOf } from './fleet-sources.js';

const message = (seq: number): ChatMessage => ({ seq, sender: 'operator', kind: 'text', text: `m${seq}`, atMs: seq });

/** Rooms by name with their messages 1..head; `keptFrom` is the oldest seq still in the log. */
function fakeChat(rooms: Array<{ name: string; head: number; keptFrom?: number }>) {
  const calls: Array<{ member: ChatMember; room: string; afterSeq: number; limit: number }> = [];
  const chat: Pick<ChatApi, 'listRooms' | 'history'> = {
    listRooms: async () => rooms.map((r): ChatRoom => ({ name: r.name, headSeq: r.head, members: ['a', 'b'] })),
    history: async (member, room, afterSeq, limit): Promise<ChatDelivery> => {
      calls.push({ member, room, afterSeq, limit });
      const r = rooms.find((x) => x.name === room)!;
      const from = Math.max(afterSeq + 1, r.keptFrom ?? 1);
      const messages = Array.from({ length: Math.max(0, Math.min(limit, r.head - from + 1)) }, (_, i) => message(from + i));
      if (r.keptFrom !== undefined && afterSeq + 1 < r.keptFrom) {
        // As Chat.history: a snapshot of the context, then what follows its head.
        return { room, messages: [], snapshot: { room, headSeq: r.head, messages } };
      }
      return { room, messages };
    },
  };
  return { chat, calls };
}

describe('chatRoomsOf', () => {
  it('reads each room’s newest messages as the orchestrator, fleet first', async () => {
    const { chat, calls } = fakeChat([{ name: 'ops', head: 9 }, { name: 'fleet', head: 2 }, { name: 'empty', head: 0 }]);
    const rooms = await chatRoomsOf(chat, 3);
    expect(rooms.map((r) => [r.name, r.headSeq, r.members, r.messages.map((m) => m.text)])).toEqual([
      ['fleet', 2, 2, ['m1', 'm2']], ['empty', 0, 2, []], ['ops', 9, 2, ['m7', 'm8', 'm9']],
    ]);
    expect(calls.map((c) => [c.member.id, c.room, c.afterSeq, c.limit])).toEqual([['orchestrator', 'fleet', 0, 3], ['orchestrator', 'ops', 6, 3]]);
  });

  it('takes a trimmed room’s messages from the snapshot, and shows a bounded number of rooms', async () => {
    const { chat } = fakeChat([{ name: 'busy', head: 100, keptFrom: 99 }]);
    expect((await chatRoomsOf(chat, 5))[0]?.messages.map((m) => m.text)).toEqual(['m99', 'm100']);
    const many = fakeChat(Array.from({ length: MAX_ROOMS_SHOWN + 3 }, (_, i) => ({ name: `r${String(i).padStart(2, '0')}`, head: 0 })));
    expect(await chatRoomsOf(many.chat, 5)).toHaveLength(MAX_ROOMS_SHOWN);
  });
});

describe('jobsOf', () => {
  it('merges the newest running and queued jobs with the newest of any state, newest first, once each', async () => {
    const record = (id: string, state: JobRecord['state'], createdAtMs: number): JobRecord => ({
      id, state, kind: 'infer', model: 'm', node: '', attempts: 1, createdAtMs, finishedAtMs: 0, runMs: 0,
      ...(state === 'failed' ? { error: { code: 'NODE-REQ-201', message: 'bad input' } } : {}),
    });
    const all = [record('q2', 'queued', 9), record('q1', 'queued', 8), record('f1', 'failed', 7), record('c1', 'completed', 6), record('r1', 'running', 1)];
    const queries: JobListQuery[] = [];
    const store: Pick<JobStore, 'list'> = {
      list: async (query = {}) => {
        queries.push(query);
        return { jobs: all.filter((j) => !query.state || j.state === query.state).slice(0, query.limit), nextPageToken: '' };
      },
    };
    const jobs = await jobsOf(store, 20);
    expect(jobs.map((j) => j.id)).toEqual(['q2', 'q1', 'f1', 'c1', 'r1']);
    expect(jobs.find((j) => j.id === 'f1')?.error).toEqual({ code: 'NODE-REQ-201', message: 'bad input' });
    expect(queries).toEqual([{ limit: RECENT_JOBS_READ }, { state: 'queued', limit: 20 }, { state: 'running', limit: 20 }]);
  });
});
