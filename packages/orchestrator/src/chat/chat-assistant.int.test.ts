import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConclaveError, captureLogger } from '@conclave/common';
import { startRedis, waitUntil } from '@conclave/testing';
import type { RedisServerHandle } from '@conclave/testing';
import { OPERATOR_MEMBER } from './chat-api.js';
import { ChatAssistant, SUMMARY_BATCH, SUMMARY_CHECK_EVERY } from './chat-assistant.js';
import { Chat } from './chat.js';

describe('the chat assistant', () => {
  let server: RedisServerHandle;
  let redis: Redis;
  const captured = captureLogger('ORCH');

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    await redis?.quit();
    await server?.stop();
  });

  it('answers @assistant from the room context, as a message in the log, once per message', async () => {
    const chat = new Chat(redis, captured.logger);
    await chat.createRoom('ops', OPERATOR_MEMBER);
    const prompts: string[] = [];
    const assistant = new ChatAssistant({
      chat, logger: captured.logger, textModelPresent: () => true,
      generate: async (prompt) => {
        prompts.push(prompt);
        return { text: ` answer ${prompts.length} `, promptTokens: 1, completionTokens: 2, finishReason: 'stop' };
      },
    });
    assistant.start();
    await chat.post(OPERATOR_MEMBER, { room: 'ops', text: 'the camera on board 7 is down' });
    const asked = await chat.post(OPERATOR_MEMBER, { room: 'ops', text: '@assistant which board is down?' });
    await waitUntil(async () => (await chat.history(OPERATOR_MEMBER, 'ops', 0, 10)).messages?.some((m) => m.sender === 'assistant'));
    await assistant.idle('ops');
    expect(prompts).toHaveLength(1);
    expect(prompts[0]).toContain('operator: the camera on board 7 is down');
    expect(prompts[0]).toMatch(/operator: @assistant which board is down\?\nassistant:$/);
    const log = (await chat.history(OPERATOR_MEMBER, 'ops', 0, 10)).messages ?? [];
    expect(log.at(-1)).toMatchObject({ sender: 'assistant', kind: 'text', text: 'answer 1', seq: Number(asked.seq) + 1 });
    // Mentions inside words and the assistant's own messages are not questions.
    await chat.post(OPERATOR_MEMBER, { room: 'ops', text: 'mail me@assistant.example' });
    await assistant.idle('ops');
    expect(prompts).toHaveLength(1);
    assistant.stop();
    chat.close();
  });

  it('says why when no text model is in the fleet, and answers nothing', async () => {
    const chat = new Chat(redis, captured.logger);
    await chat.createRoom('quiet', OPERATOR_MEMBER);
    const assistant = new ChatAssistant({
      chat, logger: captured.logger, textModelPresent: () => false, generate: () => Promise.reject(new Error('not called')),
    });
    assistant.start();
    await chat.post(OPERATOR_MEMBER, { room: 'quiet', text: '@assistant hello?' });
    await waitUntil(() => captured.lines.some((l) => l.includes('CHAT-RESP-301') && l.includes('room=quiet')));
    expect((await chat.history(OPERATOR_MEMBER, 'quiet', 0, 10)).messages).toHaveLength(1);
    assistant.stop();
    chat.close();
  });

  it('logs CHAT-RESP-302 when the generation fails, and leaves the room as it was', async () => {
    const chat = new Chat(redis, captured.logger);
    await chat.createRoom('failing', OPERATOR_MEMBER);
    const assistant = new ChatAssistant({
      chat, logger: captured.logger, textModelPresent: () => true,
      generate: () => Promise.reject(new ConclaveError('ORCH-JOB-804', { detail: 'every attempt failed' })),
    });
    assistant.start();
    await chat.post(OPERATOR_MEMBER, { room: 'failing', text: '@assistant status?' });
    await waitUntil(() => captured.lines.some((l) => l.includes('CHAT-RESP-302') && l.includes('room=failing')));
    expect(captured.lines.find((l) => l.includes('CHAT-RESP-302') && l.includes('room=failing'))).toContain('ORCH-JOB-804');
    expect((await chat.history(OPERATOR_MEMBER, 'failing', 0, 10)).messages).toHaveLength(1);
    assistant.stop();
    chat.close();
  });

  it('keeps a rolling summary of what fell out of the context window', async () => {
    const chat = new Chat(redis, captured.logger, { contextMessages: 5 });
    await chat.createRoom('long', OPERATOR_MEMBER);
    const prompts: string[] = [];
    const assistant = new ChatAssistant({
      chat, logger: captured.logger, textModelPresent: () => true,
      generate: async (prompt) => {
        prompts.push(prompt);
        return { text: `summary ${prompts.length}`, promptTokens: 1, completionTokens: 2, finishReason: 'stop' };
      },
    });
    assistant.start();
    for (let i = 1; i <= 5 + SUMMARY_BATCH + SUMMARY_CHECK_EVERY; i += 1) await chat.post(OPERATOR_MEMBER, { room: 'long', text: `m${i}` });
    await waitUntil(async () => (await chat.context('long', OPERATOR_MEMBER)).summary);
    await assistant.idle('long');
    const context = await chat.context('long', OPERATOR_MEMBER);
    expect(context.summary).toBe('summary 1');
    expect(prompts[0]).toContain('operator: m1\n');
    expect(Number(context.summaryThroughSeq)).toBeGreaterThanOrEqual(SUMMARY_BATCH);
    // The summary is a message of the log too.
    const log = (await chat.history(OPERATOR_MEMBER, 'long', 0, 100)).messages ?? [];
    expect(log.filter((m) => m.kind === 'summary')).toHaveLength(1);
    assistant.stop();
    chat.close();
  });
});
