import type {
  ChatClaim, ChatClaimResult, ChatContext, ChatDelivery, ChatPost, ChatPosted, ChatRelease, ChatReleased, ChatRoom,
} from '@conclave/protocol';

/**
 * Who speaks in the chat. The id is what the orchestrator authenticated — a node's id (from the
 * key it proved), the operator credential, or the orchestrator's own members — and is the only
 * sender a message can have.
 */
export interface ChatMember {
  id: string;
  /** Shown beside the id (a node's --name). */
  name?: string;
  /**
   * `node`: must be a member of a room to use it (nodes are members of `fleet` from their first
   * session). The others may use every room.
   */
  role: 'node' | 'operator' | 'orchestrator' | 'assistant';
}

/** Operators and applications through the Control API: one credential, one sender. */
export const OPERATOR_MEMBER: ChatMember = Object.freeze({ id: 'operator', role: 'operator' });
/** The orchestrator's own announcements. */
export const ORCHESTRATOR_MEMBER: ChatMember = Object.freeze({ id: 'orchestrator', role: 'orchestrator' });
/** The text model's voice: answers to @assistant and the rolling summaries. */
export const ASSISTANT_MEMBER: ChatMember = Object.freeze({ id: 'assistant', role: 'assistant' });

/** Where a subscription's deliveries go: a node session, or a FollowRoom call. */
export interface ChatSink {
  /** Sends one delivery; false when the sink wants no more until `writable()` resolves. */
  deliver(delivery: ChatDelivery): boolean;
  /** Resolves when the sink can take more (immediately when it can already). */
  writable(): Promise<void>;
}

export interface ChatSubscribeOptions {
  room: string;
  /** Deliver every message after this seq (0: from the start of what the log holds). */
  afterSeq: number;
  /** The epoch `afterSeq` belongs to; empty when the member has none yet. */
  epoch?: string;
  /** Keep delivering new messages; false ends after the head at the time of subscribing. */
  follow: boolean;
  /**
   * The sink acknowledges (`ack`): at most the acknowledgement window is in flight, and a member
   * that stops acknowledging is paused, not buffered for.
   */
  acks: boolean;
}

export interface ChatSubscription {
  readonly room: string;
  /** Everything up to the head at subscribe time has been delivered (follow false: the end). */
  readonly caughtUp: Promise<void>;
  /** Resolves when the subscription ends: closed by its owner, or by the orchestrator's shutdown. */
  readonly closed: Promise<void>;
  /** The member applied every message up to `seq` (acks: true). */
  ack(seq: number): void;
  close(): void;
}

/**
 * The group chat as the Control API, the node sessions and the assistant use it. Every
 * failure is a ConclaveError with a CHAT- code (catalog: packages/common/src/errors/catalog/chat.ts).
 */
export interface ChatApi {
  /** CHAT-REQ-202 for a bad name, CHAT-REQ-206 when it exists. */
  createRoom(name: string, by: ChatMember): Promise<ChatRoom>;
  listRooms(): Promise<ChatRoom[]>;
  /** CHAT-REQ-201 when there is no such room. */
  getRoom(name: string): Promise<ChatRoom>;
  join(room: string, member: ChatMember): Promise<ChatRoom>;
  leave(room: string, member: ChatMember): Promise<ChatRoom>;
  /** Appends a text message; idempotent by (sender, client_msg_id). */
  post(member: ChatMember, post: ChatPost): Promise<ChatPosted>;
  /** First come, first served; a lost claim is an answer (`ok: false`), not a rejection. */
  claim(member: ChatMember, claim: ChatClaim): Promise<ChatClaimResult>;
  /** Compare-and-delete by fencing token: CHAT-STATE-701 (stale), CHAT-STATE-704 (not claimed). */
  release(member: ChatMember, release: ChatRelease): Promise<ChatReleased>;
  context(room: string, member: ChatMember): Promise<ChatContext>;
  /** Up to `limit` messages after `afterSeq`; a snapshot first (resync_reason "trimmed") when they are no longer kept. */
  history(member: ChatMember, room: string, afterSeq: number, limit: number): Promise<ChatDelivery>;
  /** Validates the room and membership before it resolves; deliveries then go to `sink` in seq order. */
  subscribe(member: ChatMember, options: ChatSubscribeOptions, sink: ChatSink): Promise<ChatSubscription>;
}
