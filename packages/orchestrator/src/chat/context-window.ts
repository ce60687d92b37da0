import type { ChatMessage } from '@conclave/protocol';

/**
 * A token estimate that needs no tokenizer: UTF-8 bytes / 4, plus a few for the sender and
 * framing of each message. Close to GPT-2 and Llama BPE counts for English text, and never
 * below them by much for code or other scripts (they take more bytes per token, not fewer).
 */
export const TOKENS_PER_MESSAGE_OVERHEAD = 4;

export function estimateTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, 'utf8') / 4);
}

export function messageTokens(message: ChatMessage): number {
  return estimateTokens(message.text ?? '') + estimateTokens(message.sender ?? '') + TOKENS_PER_MESSAGE_OVERHEAD;
}

/**
 * The room's context window: the newest messages, at most `maxMessages`, whose tokens with the
 * summary's fit `maxTokens` (the newest message always, however long: a window without the
 * last word would answer the wrong question). `newest` is oldest first; so is the result.
 */
export function selectWindow(newest: readonly ChatMessage[], o: { maxMessages: number; maxTokens: number; summaryTokens: number }): { messages: ChatMessage[]; tokens: number } {
  const kept: ChatMessage[] = [];
  let tokens = o.summaryTokens;
  for (let i = newest.length - 1; i >= 0 && kept.length < o.maxMessages; i -= 1) {
    const message = newest[i] as ChatMessage;
    const cost = messageTokens(message);
    if (kept.length > 0 && tokens + cost > o.maxTokens) break;
    kept.push(message);
    tokens += cost;
  }
  return { messages: kept.reverse(), tokens };
}

/** A message as a line of a transcript for the text model: `sender: text`, events in brackets. */
export function transcriptLine(message: ChatMessage): string {
  // The id is what was authenticated; a node's chosen name goes beside it, never instead of it
  // (a board named "operator" must not read as the operator to the model).
  const id = message.sender || '?';
  const who = message.senderName && message.senderName !== id ? `${message.senderName} (${id})` : id;
  switch (message.kind) {
    case 'text':
      return `${who}: ${message.text ?? ''}`;
    case 'summary':
      return `[summary so far: ${message.text ?? ''}]`;
    case 'claim':
      return `[${who} claimed ${message.resource ?? ''}]`;
    case 'release':
      return `[${who} released ${message.resource ?? ''}]`;
    case 'expire':
      return `[the claim of ${message.text ?? ''} on ${message.resource ?? ''} expired]`;
    default:
      return `[${who} ${message.kind ?? ''}]`;
  }
}
