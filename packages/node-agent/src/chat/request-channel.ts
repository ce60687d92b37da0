import { ConclaveError, type Logger } from '@conclave/common';
import type { ChatReplies__Output, ChatReply__Output, ChatRequest, NodeMessage } from '@conclave/protocol';

/** The part of the orchestrator link the chat uses: the live session, if there is one. */
export interface ChatTransport {
  /** Sends one message on the registered session; false when there is none (offline). */
  send(message: NodeMessage): boolean;
  readonly connected: boolean;
}

/** One request without its id: exactly one of the op fields set. */
export type ChatOp = Omit<ChatRequest, 'requestId' | 'op'>;

/** Why a request got no reply: never sent (offline), its session ended, or no answer in time. */
export type NoReplyReason = 'offline' | 'lost' | 'timeout' | 'closed';

/** Called exactly once: with the reply (which may carry `error`), or with CHAT-NET-601 and `data.reason`. */
export type ReplyCallback = (reply: ChatReply__Output | undefined, failure: ConclaveError | undefined) => void;

/** How long a request waits for its reply. */
export const CHAT_REQUEST_TIMEOUT_MS = 10_000;
/** Requests a session has in flight at most (the orchestrator bounds them too: CHAT-REQ-208). */
export const CHAT_MAX_IN_FLIGHT = 1024;
/**
 * A ChatRequests frame is cut at about this many bytes: far below the 4 MiB a sealed frame may
 * hold, so one frame never blocks the session for long, and large enough that 10,000 short posts
 * a second go in a few frames.
 */
export const CHAT_FRAME_BYTES = 1024 * 1024;

export interface RequestChannelOptions {
  transport: ChatTransport;
  logger: Logger;
  /** @default CHAT_REQUEST_TIMEOUT_MS */
  timeoutMs?: number;
  /** @default CHAT_MAX_IN_FLIGHT */
  maxInFlight?: number;
  /** @default CHAT_FRAME_BYTES */
  frameBytes?: number;
}

interface InFlight {
  readonly done: ReplyCallback;
  readonly deadline: number;
  readonly room: string;
}

/**
 * Chat requests over the node's session: each gets a request id, every request made in the same
 * tick goes out in one ChatRequests frame (cut at CHAT_FRAME_BYTES), and each reply is matched
 * to its request by id. A request is answered exactly once: by its reply, or with CHAT-NET-601
 * when it cannot be sent, its session ends, or no reply comes within the timeout. Requests in
 * flight are bounded (CHAT-REQ-208 beyond).
 */
export class RequestChannel {
  private nextId = 1;
  /** In issue order, which is also deadline order: the timer only ever looks at the head. */
  private readonly inFlight = new Map<number, InFlight>();
  private queued: ChatRequest[] = [];
  private flushScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly frameBytes: number;

  constructor(private readonly o: RequestChannelOptions) {
    this.timeoutMs = o.timeoutMs ?? CHAT_REQUEST_TIMEOUT_MS;
    this.maxInFlight = o.maxInFlight ?? CHAT_MAX_IN_FLIGHT;
    this.frameBytes = o.frameBytes ?? CHAT_FRAME_BYTES;
  }

  get size(): number {
    return this.inFlight.size;
  }

  get capacity(): number {
    return this.maxInFlight;
  }

  get connected(): boolean {
    return this.o.transport.connected;
  }

  /**
   * Queues `op` for this tick's frame; `done` is called once with its outcome. Throws
   * CHAT-NET-601 when offline and CHAT-REQ-208 when the requests in flight are at the bound;
   * `done` is then never called.
   */
  issue(op: ChatOp, done: ReplyCallback): number {
    if (!this.o.transport.connected) throw noReply('offline', roomOf(op), 'the node is not connected to the orchestrator');
    if (this.inFlight.size >= this.maxInFlight) {
      throw new ConclaveError('CHAT-REQ-208', { detail: `${this.maxInFlight} chat requests in flight`, data: { room: roomOf(op) } });
    }
    const requestId = this.nextId++;
    this.inFlight.set(requestId, { done, deadline: Date.now() + this.timeoutMs, room: roomOf(op) });
    this.queued.push({ requestId, ...op });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    this.armTimer();
    return requestId;
  }

  /** `issue` as a promise of the reply's outcome: a reply's `error` rejects as ChatReplyError (by the caller). */
  request(op: ChatOp): Promise<ChatReply__Output> {
    return new Promise((resolve, reject) => {
      this.issue(op, (reply, failure) => (reply ? resolve(reply) : reject(failure)));
    });
  }

  /** Matches each reply to its request; a reply for none (answered after its timeout) is dropped. */
  receive(replies: ChatReplies__Output): void {
    for (const reply of replies.replies) {
      const entry = this.inFlight.get(reply.requestId);
      if (!entry) {
        this.o.logger.debug('REQ', 'chat reply for no request in flight dropped', { requestId: reply.requestId });
        continue;
      }
      this.inFlight.delete(reply.requestId);
      entry.done(reply, undefined);
    }
  }

  /** The session ended: every request still waiting fails with CHAT-NET-601 (reason `lost`). */
  sessionLost(): void {
    this.failAll('lost', 'the session with the orchestrator ended');
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.failAll('closed', 'the node agent is shutting down');
  }

  private failAll(reason: NoReplyReason, detail: string): void {
    this.queued = [];
    const entries = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const entry of entries) entry.done(undefined, noReply(reason, entry.room, detail));
  }

  private flush(): void {
    this.flushScheduled = false;
    const queued = this.queued;
    this.queued = [];
    let frame: ChatRequest[] = [];
    let bytes = 0;
    const sendFrame = (): void => {
      if (frame.length === 0) return;
      const requests = frame;
      frame = [];
      bytes = 0;
      if (this.o.transport.send({ chat: { requests } })) return;
      for (const request of requests) this.fail(Number(request.requestId), 'offline', 'the node is not connected to the orchestrator');
    };
    for (const request of queued) {
      // Only requests still waiting: one may have failed (session lost) since it was queued.
      if (!this.inFlight.has(Number(request.requestId))) continue;
      const size = estimateBytes(request);
      if (bytes + size > this.frameBytes) sendFrame();
      frame.push(request);
      bytes += size;
    }
    sendFrame();
  }

  private fail(requestId: number, reason: NoReplyReason, detail: string): void {
    const entry = this.inFlight.get(requestId);
    if (!entry) return;
    this.inFlight.delete(requestId);
    entry.done(undefined, noReply(reason, entry.room, detail));
  }

  private armTimer(): void {
    if (this.timer || this.inFlight.size === 0) return;
    const head = this.inFlight.values().next().value as InFlight;
    this.timer = setTimeout(() => this.expire(), Math.max(0, head.deadline - Date.now()));
    this.timer.unref();
  }

  private expire(): void {
    this.timer = undefined;
    const now = Date.now();
    for (const [requestId, entry] of this.inFlight) {
      if (entry.deadline > now) break;
      this.fail(requestId, 'timeout', `no answer within ${this.timeoutMs} ms`);
    }
    this.armTimer();
  }
}

/** CHAT-NET-601 with the reason a request got no reply; `data.reason` tells a caller which. */
export function noReply(reason: NoReplyReason, room: string, detail: string): ConclaveError {
  return new ConclaveError('CHAT-NET-601', { detail, data: { reason, ...(room ? { room } : {}) } });
}

export function noReplyReason(err: unknown): NoReplyReason | undefined {
  if (!(err instanceof ConclaveError) || err.code !== 'CHAT-NET-601') return undefined;
  return err.data['reason'] as NoReplyReason | undefined;
}

function roomOf(op: ChatOp): string {
  return op.post?.room ?? op.claim?.room ?? op.release?.room ?? op.join?.room ?? op.leave?.room ?? op.subscribe?.room
    ?? op.unsubscribe?.room ?? op.context?.room ?? op.history?.room ?? '';
}

/** An upper bound of the request's encoded size: UTF-8 takes at most 3 bytes per UTF-16 unit. */
function estimateBytes(request: ChatRequest): number {
  const post = request.post;
  if (!post) return 64;
  return 64 + 3 * ((post.text?.length ?? 0) + (post.room?.length ?? 0) + (post.clientMsgId?.length ?? 0) + (post.resource?.length ?? 0));
}
