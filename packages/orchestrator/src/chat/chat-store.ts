import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ChatMessage, ChatRoom } from '@conclave/protocol';
import { LuaScript } from '../lua-script.js';
import { redisKeys } from '../redis-keys.js';
import { CLAIM_SCRIPT, CREATE_ROOM_SCRIPT, MEMBERSHIP_SCRIPT, POST_SCRIPT, RELEASE_SCRIPT } from './chat-scripts.js';

/**
 * client_msg_ids remembered per sender and room: more than a node's chat outbox ever holds
 * (10,000), so every post an outbox sends again is still known, and memory stays bounded.
 */
export const MESSAGE_IDS_PER_SENDER = 20_000;
/** How long a resource's last claim is remembered after its TTL, to log its expiry. */
export const LAST_CLAIM_MEMORY_MS = 24 * 60 * 60 * 1000;

/** What the scripts answer, as the store hands it on; Chat turns the refusals into coded errors. */
export type PostOutcome =
  | { status: 'ok' | 'dup'; seq: number; epoch: string }
  | { status: 'no-room' | 'not-member' }
  | { status: 'stale'; fence: number; holder: string };

export type ClaimOutcome =
  | {
    status: 'ok' | 'held'; fence: number; seq: number; expiresAtMs: number; holder: string; epoch: string;
    expired?: { seq: number; fence: number; holder: string };
  }
  | { status: 'no-room' }
  | { status: 'not-member' };

export type ReleaseOutcome =
  | { status: 'ok'; seq: number; epoch: string }
  | { status: 'no-room' }
  | { status: 'not-claimed' }
  | { status: 'stale'; fence: number; holder: string };

export interface PostInput {
  room: string;
  sender: string;
  senderName: string;
  text: string;
  clientMsgId: string;
  resource: string;
  fence: number;
  atMs: number;
  requireMember: boolean;
  /** `text` for members' posts; the orchestrator's own members also write `summary`. */
  kind?: 'text' | 'summary';
}

export interface ChatStoreLimits {
  /** MAXLEN ~ of every room's stream. */
  logMaxLen: number;
  /** How long a quiet sender's client_msg_ids are remembered. */
  idempotencySeconds: number;
}

/**
 * The chat's Redis side: the scripts (chat-scripts.ts), reads of a room's log and record, and
 * nothing else. It knows keys and replies, not who may do what (chat.ts decides that).
 */
export class ChatStore {
  private readonly scripts: {
    post: LuaScript; membership: LuaScript; claim: LuaScript; release: LuaScript; createRoom: LuaScript;
  };

  constructor(private readonly redis: Redis, private readonly limits: ChatStoreLimits) {
    this.scripts = {
      post: new LuaScript(redis, POST_SCRIPT, 6),
      membership: new LuaScript(redis, MEMBERSHIP_SCRIPT, 4),
      claim: new LuaScript(redis, CLAIM_SCRIPT, 7),
      release: new LuaScript(redis, RELEASE_SCRIPT, 5),
      createRoom: new LuaScript(redis, CREATE_ROOM_SCRIPT, 1),
    };
  }

  /** True when created; false when a room of that name exists. */
  async createRoom(name: string, createdBy: string, atMs: number): Promise<boolean> {
    const created = Number(await this.scripts.createRoom.run(redisKeys.chatMeta(name), randomBytes(8).toString('hex'), atMs, createdBy));
    // The index lives in another slot, so it is a second command; a room missing from it is
    // still found by name, and listRooms skips names whose record is gone.
    await this.redis.sadd(redisKeys.chatRooms(), name);
    return created === 1;
  }

  async roomNames(): Promise<string[]> {
    return (await this.redis.smembers(redisKeys.chatRooms())).sort();
  }

  /** The record, head, first kept seq and members in one round trip; undefined for no such room. */
  async room(name: string): Promise<ChatRoom | undefined> {
    const results = await this.redis.multi()
      .hgetall(redisKeys.chatMeta(name))
      .get(redisKeys.chatSeq(name))
      .xrange(redisKeys.chatLog(name), '-', '+', 'COUNT', 1)
      .smembers(redisKeys.chatMembers(name))
      .exec();
    if (!results) return undefined;
    const [meta, head, first, members] = results.map(([err, value]) => {
      if (err) throw err;
      return value;
    }) as [Record<string, string>, string | null, Array<[string, string[]]>, string[]];
    if (!meta.epoch) return undefined;
    return {
      name, epoch: meta.epoch, headSeq: Number(head ?? 0), members: members.sort(),
      createdAtMs: Number(meta.createdAtMs ?? 0), createdBy: meta.createdBy ?? '',
      firstSeq: first[0] ? seqOfId(first[0][0]) : 0,
    };
  }

  async membership(room: string, member: string, name: string, change: 'join' | 'leave', atMs: number): Promise<{ status: 'ok'; seq: number; epoch: string } | { status: 'no-room' }> {
    const reply = await this.scripts.membership.run(
      ...roomKeys(room), redisKeys.chatMembers(room), member, name, change, atMs, this.limits.logMaxLen,
    );
    if (reply[0] === 'no-room') return { status: 'no-room' };
    return { status: 'ok', seq: Number(reply[1]), epoch: String(reply[2] ?? '') };
  }

  async post(p: PostInput): Promise<PostOutcome> {
    const reply = await this.scripts.post.run(
      ...roomKeys(p.room), redisKeys.chatMembers(p.room),
      redisKeys.chatMessageIds(p.room, p.sender), redisKeys.chatClaim(p.room, p.resource),
      p.sender, p.senderName, p.text, p.clientMsgId, p.resource ? String(p.fence) : '', p.resource, p.atMs,
      this.limits.logMaxLen, p.requireMember ? '1' : '0', this.limits.idempotencySeconds, p.kind ?? 'text', MESSAGE_IDS_PER_SENDER,
    );
    switch (reply[0]) {
      case 'ok':
      case 'dup':
        return { status: reply[0], seq: Number(reply[1]), epoch: String(reply[2] ?? '') };
      case 'stale':
        return { status: 'stale', fence: Number(reply[1] || 0), holder: String(reply[2] ?? '') };
      case 'not-member':
        return { status: 'not-member' };
      default:
        return { status: 'no-room' };
    }
  }

  async claim(room: string, claimant: string, name: string, resource: string, ttlMs: number, atMs: number, requireMember: boolean): Promise<ClaimOutcome> {
    const reply = await this.scripts.claim.run(
      ...roomKeys(room), redisKeys.chatMembers(room), redisKeys.chatClaim(room, resource), redisKeys.chatFence(room), redisKeys.chatLastClaim(room, resource),
      claimant, name, resource, ttlMs, atMs, this.limits.logMaxLen, requireMember ? '1' : '0', LAST_CLAIM_MEMORY_MS,
    );
    if (reply[0] === 'ok' || reply[0] === 'held') {
      const outcome: ClaimOutcome = {
        status: reply[0], fence: Number(reply[1]), seq: Number(reply[2]), expiresAtMs: Number(reply[3]), holder: String(reply[4]), epoch: String(reply[5] ?? ''),
      };
      if (Number(reply[6] ?? 0) > 0) outcome.expired = { seq: Number(reply[6]), fence: Number(reply[7]), holder: String(reply[8] ?? '') };
      return outcome;
    }
    return reply[0] === 'not-member' ? { status: 'not-member' } : { status: 'no-room' };
  }

  async release(room: string, sender: string, name: string, resource: string, fence: number, atMs: number): Promise<ReleaseOutcome> {
    const reply = await this.scripts.release.run(
      ...roomKeys(room), redisKeys.chatClaim(room, resource), redisKeys.chatLastClaim(room, resource),
      sender, name, resource, fence, atMs, this.limits.logMaxLen,
    );
    switch (reply[0]) {
      case 'ok':
        return { status: 'ok', seq: Number(reply[1]), epoch: String(reply[2] ?? '') };
      case 'stale':
        return { status: 'stale', fence: Number(reply[1] || 0), holder: String(reply[2] ?? '') };
      case 'not-claimed':
        return { status: 'not-claimed' };
      default:
        return { status: 'no-room' };
    }
  }

  /** Up to `limit` messages after `afterSeq`, oldest first. */
  async range(room: string, afterSeq: number, limit: number): Promise<ChatMessage[]> {
    const entries = await this.redis.xrange(redisKeys.chatLog(room), `(${afterSeq}-0`, '+', 'COUNT', limit);
    return entries.map(([id, fields]) => toChatMessage(room, id, fields));
  }

  /** The newest `limit` messages, oldest first. */
  async newest(room: string, limit: number): Promise<ChatMessage[]> {
    const entries = await this.redis.xrevrange(redisKeys.chatLog(room), '+', '-', 'COUNT', limit);
    return entries.reverse().map(([id, fields]) => toChatMessage(room, id, fields));
  }

  /** A new epoch for a room whose log went back: cursors of the old one are void. */
  async renewEpoch(room: string, epoch: string): Promise<void> {
    await this.redis.hset(redisKeys.chatMeta(room), 'epoch', epoch);
  }

  async summary(room: string): Promise<{ text: string; throughSeq: number }> {
    const summary = await this.redis.hgetall(redisKeys.chatSummary(room));
    return { text: summary.text ?? '', throughSeq: Number(summary.throughSeq ?? 0) };
  }

  async setSummary(room: string, text: string, throughSeq: number): Promise<void> {
    await this.redis.hset(redisKeys.chatSummary(room), 'text', text, 'throughSeq', throughSeq);
  }
}

/** The first keys of every room script: meta, seq, log. */
function roomKeys(room: string): [string, string, string] {
  return [redisKeys.chatMeta(room), redisKeys.chatSeq(room), redisKeys.chatLog(room)];
}

function seqOfId(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}

/** A stream entry (`<seq>-0`, flat field list) as the wire's ChatMessage. */
export function toChatMessage(room: string, id: string, fields: string[]): ChatMessage {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string;
  const message: ChatMessage = {
    room, seq: seqOfId(id), sender: f.s ?? '', kind: f.k ?? 'text', text: f.t ?? '', atMs: Number(f.a ?? 0),
  };
  if (f.n) message.senderName = f.n;
  if (f.c) message.clientMsgId = f.c;
  if (f.r) message.resource = f.r;
  if (f.f) message.fence = Number(f.f);
  if (f.l) message.ttlMs = Number(f.l);
  return message;
}
