import type {
  ChatClaimResult, ChatContext, ChatDelivery, ChatMessage, ChatPosted, ChatReleased, ChatRoom,
} from './generated/index.js';

/** The room every node is a member of from its first session. */
export const CHAT_FLEET_ROOM = 'fleet';

/**
 * Room names (CHAT-REQ-202): they become parts of Redis keys and hash tags, so no braces or
 * spaces. Checked by the orchestrator, and by the agent before anything is sent.
 */
export const CHAT_ROOM_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** client_msg_ids and resource names (CHAT-REQ-207): 1-128 printable ASCII characters, no spaces. */
export const CHAT_TOKEN_PATTERN = /^[\x21-\x7e]{1,128}$/;

/**
 * The `--json` shapes of the chat commands, one definition for both CLIs (`orchestrator chat …`
 * and `node-agent chat …`) and the board socket, so that a script reads the same objects from
 * either. Optional parts appear only when set.
 */

/** A message of a room's log: `{room, seq, sender, kind, text, atMs}` and, when set, the rest. */
export interface ChatMessageJson {
  room: string;
  seq: number;
  sender: string;
  kind: string;
  text: string;
  atMs: number;
  senderName?: string;
  clientMsgId?: string;
  resource?: string;
  fence?: number;
  ttlMs?: number;
}

export function chatMessageJson(m: ChatMessage): ChatMessageJson {
  const json: ChatMessageJson = {
    room: m.room ?? '', seq: Number(m.seq ?? 0), sender: m.sender ?? '', kind: m.kind ?? '', text: m.text ?? '', atMs: Number(m.atMs ?? 0),
  };
  if (m.senderName) json.senderName = m.senderName;
  if (m.clientMsgId) json.clientMsgId = m.clientMsgId;
  if (m.resource) json.resource = m.resource;
  if (m.fence) json.fence = Number(m.fence);
  if (m.ttlMs) json.ttlMs = Number(m.ttlMs);
  return json;
}

/** `chat send`: `{room, seq, sender, clientMsgId}` (and `duplicate: true` for a retried id). */
export function chatPostedJson(p: ChatPosted): { room: string; seq: number; sender: string; clientMsgId: string; duplicate?: true } {
  return {
    room: p.room ?? '', seq: Number(p.seq ?? 0), sender: p.sender ?? '', clientMsgId: p.clientMsgId ?? '',
    ...(p.duplicate ? { duplicate: true as const } : {}),
  };
}

/** `chat claim`: `{ok: true, fence, seq, …}` when won, `{ok: false, holder, seq, code}` when held. */
export function chatClaimJson(c: ChatClaimResult): Record<string, unknown> {
  const base = { room: c.room ?? '', resource: c.resource ?? '' };
  if (c.ok) return { ok: true, fence: Number(c.fence ?? 0), seq: Number(c.seq ?? 0), ...base, holder: c.holder ?? '', expiresAtMs: Number(c.expiresAtMs ?? 0) };
  return { ok: false, holder: c.holder ?? '', seq: Number(c.seq ?? 0), ...base, code: c.code ?? '', expiresAtMs: Number(c.expiresAtMs ?? 0) };
}

export function chatReleasedJson(r: ChatReleased): { room: string; resource: string; fence: number; seq: number } {
  return { room: r.room ?? '', resource: r.resource ?? '', fence: Number(r.fence ?? 0), seq: Number(r.seq ?? 0) };
}

export function chatRoomJson(r: ChatRoom): Record<string, unknown> {
  return {
    name: r.name ?? '', epoch: r.epoch ?? '', headSeq: Number(r.headSeq ?? 0), firstSeq: Number(r.firstSeq ?? 0),
    members: [...(r.members ?? [])], createdAtMs: Number(r.createdAtMs ?? 0), createdBy: r.createdBy ?? '',
  };
}

export function chatContextJson(c: ChatContext): Record<string, unknown> {
  return {
    room: c.room ?? '', epoch: c.epoch ?? '', headSeq: Number(c.headSeq ?? 0),
    summary: c.summary ?? '', summaryThroughSeq: Number(c.summaryThroughSeq ?? 0),
    tokens: c.tokens ?? 0, maxMessages: c.maxMessages ?? 0, maxTokens: c.maxTokens ?? 0,
    messages: (c.messages ?? []).map(chatMessageJson),
  };
}

/**
 * `chat tail --json` when a delivery is a resynchronisation: one line
 * `{room, kind: "resync", reason, code, headSeq, summary}` before the snapshot's messages.
 */
export function chatResyncJson(d: ChatDelivery): Record<string, unknown> {
  return {
    room: d.room ?? '', kind: 'resync', reason: d.resyncReason ?? '', code: d.code ?? '',
    headSeq: Number(d.snapshot?.headSeq ?? 0), summary: d.snapshot?.summary ?? '',
  };
}

/** `chat tail` without --json: `#<seq> <time> <sender>[ (<name>)] <kind>: <text>` (claims add resource and fence). */
export function formatChatMessage(m: ChatMessageJson): string {
  const who = m.senderName && m.senderName !== m.sender ? `${m.sender} (${m.senderName})` : m.sender;
  const claim = m.resource ? ` [${m.resource}${m.fence ? ` fence=${m.fence}` : ''}${m.ttlMs ? ` ttl=${m.ttlMs}ms` : ''}]` : '';
  const text = m.text ? ` ${m.text}` : '';
  return `#${m.seq} ${new Date(m.atMs).toISOString()} ${who} ${m.kind}${claim}:${text}`;
}
