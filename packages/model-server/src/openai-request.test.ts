import { describe, expect, it } from 'vitest';
import { parseCompletionCall } from './openai-request.js';

const chat = (extra: Record<string, unknown>): unknown => ({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra });

describe('parseCompletionCall', () => {
  it('parses a chat call with defaults left to the model', () => {
    const call = parseCompletionCall(chat({ stop: 'x', seed: 3, unknown_field: 1 }), 'chat', 100);
    expect(call.request).toEqual({ input: { messages: [{ role: 'user', content: 'hi' }] }, stream: false, stop: ['x'], seed: 3 });
  });

  it('accepts text parts and a one-element prompt array', () => {
    const c = parseCompletionCall({ model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }] }] }, 'chat', 10);
    expect(c.request.input).toEqual({ messages: [{ role: 'user', content: 'a' }] });
    expect(parseCompletionCall({ model: 'm', prompt: ['p'] }, 'text', 10).request.input).toEqual({ prompt: 'p' });
    // The engine starts an empty prompt from the model's BOS, or refuses it when there is none.
    expect(parseCompletionCall({ model: 'm', prompt: '' }, 'text', 10).request.input).toEqual({ prompt: '' });
  });

  it.each([
    [chat({ max_tokens: 0 }), /max_tokens/],
    [chat({ max_tokens: 101 }), /max_tokens/],
    [chat({ temperature: 'hot' }), /temperature/],
    [chat({ stream: 'yes' }), /stream/],
    [chat({ n: 2 }), /n: only/],
    [{ model: 'm', messages: [] }, /messages/],
    [{ model: 'm', messages: [{ role: 'user', content: '  ' }] }, /empty/],
    [{ model: 'm', messages: [{ role: 'wizard', content: 'x' }] }, /role/],
    [{ messages: [{ role: 'user', content: 'x' }] }, /model/],
    [[1, 2], /body/],
  ])('refuses %j', (body, pattern) => {
    expect(() => parseCompletionCall(body, 'chat', 100)).toThrow(pattern);
  });
});
