import { ConclaveError, toConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type { ChatContext, ChatMessage, GenerateResult } from '@conclave/protocol';
import { ASSISTANT_MEMBER } from './chat-api.js';
import type { Chat } from './chat.js';
import { transcriptLine } from './context-window.js';

/** A message addressed to the assistant: `@assistant` as a word, anywhere in a text message. */
export const ASSISTANT_MENTION = /(^|[^\w@])@assistant\b/i;

/** Tokens an answer may have. */
export const ANSWER_MAX_TOKENS = 256;
/** Tokens a summary may have. */
export const SUMMARY_MAX_TOKENS = 200;
/**
 * Messages that must have fallen out of the context window (beyond the summary) before a new
 * summary is made: one generation per this many messages, not one per message.
 */
export const SUMMARY_BATCH = 20;
/**
 * How many messages of a room pass between two looks at whether a summary is due: a look reads
 * the room's context, which every message would make one read per post.
 */
export const SUMMARY_CHECK_EVERY = 10;
/** Questions one room may have waiting for the assistant; more are not answered (CHAT-RESP-302 logged). */
export const MAX_PENDING_PER_ROOM = 8;

export interface ChatAssistantOptions {
  chat: Chat;
  logger: Logger;
  /** Whether a text model is in the fleet now (a connected `text-generation` node). */
  textModelPresent: () => boolean;
  /** Runs a generate job through the queue like any other and resolves with its result. */
  generate: (prompt: string, maxTokens: number) => Promise<GenerateResult>;
}

/**
 * The member `assistant`: the fleet's text model speaking in the chat. It answers messages that
 * address @assistant from the room's context (the window and the rolling summary that the
 * orchestrator keeps, so no member needs its own copy), and keeps that summary of what fell out
 * of the window. Its answers are messages like any other, idempotent by the seq they answer, so
 * work redone after a restart is appended once. One room's work runs one at a time, in order.
 */
export class ChatAssistant {
  private readonly rooms = new Map<string, Promise<void>>();
  private readonly pending = new Map<string, number>();
  /** Messages per room since the last look at its summary. */
  private readonly sinceSummaryCheck = new Map<string, number>();
  private readonly log: Logger;
  private readonly onMessage = (message: ChatMessage) => this.consider(message);
  private stopped = false;

  constructor(private readonly o: ChatAssistantOptions) {
    this.log = o.logger.withPrefix('CHAT');
  }

  start(): void {
    this.o.chat.on('message', this.onMessage);
  }

  stop(): void {
    this.stopped = true;
    this.o.chat.off('message', this.onMessage);
  }

  /** Resolves when the work queued for `room` so far is done (tests, shutdown). */
  idle(room: string): Promise<void> {
    return this.rooms.get(room) ?? Promise.resolve();
  }

  private consider(message: ChatMessage): void {
    if (this.stopped || message.sender === ASSISTANT_MEMBER.id) return;
    const room = message.room ?? '';
    if (message.kind === 'text' && ASSISTANT_MENTION.test(message.text ?? '')) {
      this.enqueue(room, () => this.answer(message));
      return;
    }
    const count = (this.sinceSummaryCheck.get(room) ?? 0) + 1;
    if (count < SUMMARY_CHECK_EVERY) {
      this.sinceSummaryCheck.set(room, count);
      return;
    }
    this.sinceSummaryCheck.delete(room);
    this.enqueue(room, () => this.summariseIfDue(room));
  }

  private enqueue(room: string, work: () => Promise<void>): void {
    const waiting = this.pending.get(room) ?? 0;
    if (waiting >= MAX_PENDING_PER_ROOM) {
      this.log.failure(new ConclaveError('CHAT-RESP-302', { detail: `${waiting} requests already wait in this room`, data: { room, seq: 0 } }), {}, 'warn');
      return;
    }
    this.pending.set(room, waiting + 1);
    const previous = this.rooms.get(room) ?? Promise.resolve();
    const next = previous.then(work).catch((err: unknown) => this.log.failure(err, { room, seq: 0 }, 'warn'));
    this.rooms.set(room, next);
    void next.then(() => {
      const left = (this.pending.get(room) ?? 1) - 1;
      if (left > 0) this.pending.set(room, left);
      else this.pending.delete(room);
      if (this.rooms.get(room) === next) this.rooms.delete(room);
    });
  }

  private async answer(message: ChatMessage): Promise<void> {
    const room = message.room ?? '';
    const seq = Number(message.seq);
    if (!this.o.textModelPresent()) {
      this.log.failure(new ConclaveError('CHAT-RESP-301', { data: { room, seq } }), {}, 'warn');
      return;
    }
    const context = await this.o.chat.context(room, ASSISTANT_MEMBER);
    const prompt = answerPrompt(context, message);
    let result: GenerateResult;
    try {
      result = await this.o.generate(prompt, ANSWER_MAX_TOKENS);
    } catch (err) {
      const cause = toConclaveError(err, 'CHAT-RESP-302');
      this.log.failure(new ConclaveError('CHAT-RESP-302', { detail: `${cause.code} ${cause.message}`, data: { room, seq }, cause }), {}, 'warn');
      return;
    }
    const text = (result.text ?? '').trim() || '(no answer)';
    const posted = await this.o.chat.postAs(ASSISTANT_MEMBER, room, text, `answer-${context.epoch ?? ''}-${seq}`, 'text');
    this.log.info('RESP', 'assistant answered', { room, seq: posted.seq, inReplyTo: seq, contextMessages: context.messages?.length ?? 0, tokens: result.completionTokens });
    await this.summariseIfDue(room);
  }

  /** A new summary once SUMMARY_BATCH messages beyond the last one have left the window. */
  private async summariseIfDue(room: string): Promise<void> {
    if (!this.o.textModelPresent()) return;
    const chat = this.o.chat;
    const context = await chat.context(room, ASSISTANT_MEMBER);
    const oldestInWindow = Number(context.messages?.[0]?.seq ?? 0);
    const through = Number(context.summaryThroughSeq ?? 0);
    const fallen = oldestInWindow - 1 - through;
    if (fallen < SUMMARY_BATCH) return;
    // What the log no longer holds cannot be summarised: start from the oldest entry it keeps.
    const firstKept = Number((await chat.getRoom(room)).firstSeq ?? 0);
    const from = Math.max(through, firstKept - 1);
    const dropped = await chat.history(ASSISTANT_MEMBER, room, from, Math.min(oldestInWindow - 1 - from, 256));
    const messages = (dropped.messages ?? []).filter((m) => Number(m.seq) < oldestInWindow);
    const last = messages[messages.length - 1];
    if (!last) return;
    const result = await this.o.generate(summaryPrompt(context.summary ?? '', messages), SUMMARY_MAX_TOKENS);
    const summary = (result.text ?? '').trim();
    if (!summary) return;
    const throughSeq = Number(last.seq);
    await chat.setSummary(room, summary, throughSeq);
    const posted = await chat.postAs(ASSISTANT_MEMBER, room, summary, `summary-${context.epoch ?? ''}-${throughSeq}`, 'summary');
    this.log.info('RESP', 'room summary updated', { room, seq: posted.seq, throughSeq });
  }
}

/** The room as a transcript, the message to answer last, then the assistant's turn. */
export function answerPrompt(context: ChatContext, message: ChatMessage): string {
  const lines = ['The following is a group chat of a fleet of machines and their operators. You are "assistant". Answer the last message addressed to you, briefly.'];
  if (context.summary) lines.push(`Summary of earlier messages: ${context.summary}`);
  const window = context.messages ?? [];
  for (const m of window) lines.push(transcriptLine(m));
  if (!window.some((m) => Number(m.seq) === Number(message.seq))) lines.push(transcriptLine(message));
  lines.push('assistant:');
  return lines.join('\n');
}

export function summaryPrompt(previous: string, messages: readonly ChatMessage[]): string {
  const lines = ['Summarise this group chat in a few sentences, keeping decisions, claims and open questions.'];
  if (previous) lines.push(`Summary so far: ${previous}`);
  for (const m of messages) lines.push(transcriptLine(m));
  lines.push('Summary:');
  return lines.join('\n');
}
