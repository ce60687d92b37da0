// Plain values only: `orchestrator start`'s schema reads them, and client commands must not load
// what the chat needs at run time (ioredis).

export interface ChatLimits {
  /** Largest text of one message, in UTF-8 bytes. @default 16384 */
  maxMessageBytes: number;
  /** Entries a room's log keeps (MAXLEN ~): older ones are trimmed, their gist kept in the summary. @default 10000 */
  logMaxLen: number;
  /** The context window: at most this many messages… @default 50 */
  contextMessages: number;
  /** …within this many estimated tokens, summary included. @default 2048 */
  contextTokens: number;
  /** How long a client_msg_id is remembered. @default 86400 */
  idempotencySeconds: number;
}

export const DEFAULT_CHAT_LIMITS: Readonly<ChatLimits> = Object.freeze({
  maxMessageBytes: 16 * 1024,
  logMaxLen: 10_000,
  contextMessages: 50,
  contextTokens: 2_048,
  idempotencySeconds: 86_400,
});
