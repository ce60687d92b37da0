import { createConnection, type Socket } from 'node:net';
import { ConclaveError } from '@conclave/common';
import { ChatReplyError, type ChatErrorJson } from './chat-error.js';
import { LineSplitter } from './line-splitter.js';

/** An answer line of the board socket. */
export interface SocketAnswer {
  id: unknown;
  ok?: boolean;
  error?: ChatErrorJson;
  event?: 'message' | 'resync' | 'end';
  [key: string]: unknown;
}

/** Answers are read with a generous line limit: a context answer carries a whole window. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/**
 * A program's side of the board socket (`node-agent chat …` uses it): one connection, requests
 * numbered, answers matched by id. Every failure to reach the agent is CHAT-NET-602; an error
 * the agent answers rejects as ChatReplyError with its code.
 */
export class ChatSocketClient {
  private nextId = 1;
  private readonly waiting = new Map<number, (answer: SocketAnswer) => void>();
  private ended: ConclaveError | undefined;
  private readonly onEnd = new Set<(err: ConclaveError) => void>();

  private constructor(private readonly socket: Socket, private readonly path: string) {
    const splitter = new LineSplitter(MAX_ANSWER_BYTES);
    socket.on('data', (chunk: Buffer) => splitter.push(chunk, (line) => this.line(line), () => undefined));
    socket.on('error', (err: NodeJS.ErrnoException) => this.end(unavailable(path, err.code ?? err.message, err)));
    socket.on('close', () => this.end(unavailable(path, 'the agent closed the connection')));
  }

  static connect(path: string): Promise<ChatSocketClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      const failed = (err: NodeJS.ErrnoException): void => reject(unavailable(path, err.code ?? err.message, err));
      socket.once('error', failed);
      socket.once('connect', () => {
        socket.off('error', failed);
        resolve(new ChatSocketClient(socket, path));
      });
    });
  }

  /** Sends one request and resolves with its answer; rejects with the error the agent answered. */
  async request(body: Record<string, unknown>): Promise<SocketAnswer> {
    let result: SocketAnswer | undefined;
    await this.stream(body, (answer) => {
      result = answer;
      return true;
    });
    return result as SocketAnswer;
  }

  /**
   * Sends one request and hands each answer line with its id to `onLine` until it returns true
   * (or an `end` event, or an error answer, which rejects).
   */
  stream(body: Record<string, unknown>, onLine: (answer: SocketAnswer) => boolean | void): Promise<void> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      const finish = (err?: unknown): void => {
        this.waiting.delete(id);
        this.onEnd.delete(ended);
        if (err === undefined) resolve();
        else reject(err);
      };
      const ended = (err: ConclaveError): void => finish(err);
      this.onEnd.add(ended);
      this.waiting.set(id, (answer) => {
        if (answer.ok === false) return finish(new ChatReplyError({ code: answer.error?.code ?? '', message: answer.error?.message ?? '', retryable: answer.error?.retryable ?? false }));
        if (answer.event === 'end') return finish();
        try {
          if (onLine(answer) === true) finish();
        } catch (err) {
          finish(err);
        }
      });
      this.socket.write(`${JSON.stringify({ id, ...body })}\n`);
    });
  }

  close(): void {
    this.ended ??= unavailable(this.path, 'closed');
    this.socket.destroy();
  }

  private line(text: string): void {
    let answer: SocketAnswer;
    try {
      answer = JSON.parse(text) as SocketAnswer;
    } catch {
      return;
    }
    if (typeof answer.id === 'number') this.waiting.get(answer.id)?.(answer);
    // An answer without our id (null): the agent refused the connection itself (too many open).
    else if (answer.ok === false) for (const waiter of [...this.waiting.values()]) waiter(answer);
  }

  private end(err: ConclaveError): void {
    if (this.ended && this.onEnd.size === 0) return;
    this.ended ??= err;
    for (const ended of [...this.onEnd]) ended(this.ended);
  }
}

function unavailable(path: string, reason: string, cause?: unknown): ConclaveError {
  return new ConclaveError('CHAT-NET-602', { detail: `${path}: ${reason}`, ...(cause ? { cause } : {}) });
}
