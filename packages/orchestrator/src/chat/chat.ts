import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ConclaveError } from '@conclave/common';
import { CHAT_FLEET_ROOM, CHAT_ROOM_NAME_PATTERN, CHAT_TOKEN_PATTERN } from '@conclave/protocol';
import type { Logger } from '@conclave/common';
import type {
  ChatClaim, ChatClaimResult, ChatContext, ChatDelivery, ChatMessage, ChatPost, ChatPosted, ChatRelease, ChatReleased, ChatRoom,
} from '@conclave/protocol';
import type { ChatApi, ChatMember, ChatSink, ChatSubscribeOptions, ChatSubscription } from './chat-api.js';
import { ORCHESTRATOR_MEMBER } from './chat-api.js';
import { ChatStore } from './chat-store.js';
import type { PostOutcome } from './chat-store.js';
import { estimateTokens, selectWindow } from './context-window.js';
import { DEFAULT_CHAT_LIMITS, type ChatLimits } from './chat-limits.js';
import { FeedSubscription, RoomFeed, withinDeliveryBytes, type ResyncReason } from './room-feed.js';

export { DEFAULT_CHAT_LIMITS, type ChatLimits } from './chat-limits.js';

/** The room every node joins at its first session (the name both sides share). */
export const FLEET_ROOM = CHAT_FLEET_ROOM;

export const MIN_CLAIM_TTL_MS = 100;
export const MAX_CLAIM_TTL_MS = 24 * 60 * 60 * 1000;
/** The most messages one history read returns. */
export const MAX_HISTORY_PAGE = 256;

export interface ChatEvents {
  /** A message was appended (in seq order per room): the assistant listens. */
  message: [ChatMessage];
}

/**
 * The group chat on the orchestrator (docs/chat.md): it checks every request, runs the room's
 * scripts through ChatStore, and hands each appended message to the room's live feed. The
 * member passed in is the authenticated identity; nothing a client sends can name the sender.
 * Every CHAT- line carries the room and, when there is one, the seq.
 */
export class Chat extends EventEmitter<ChatEvents> implements ChatApi {
  readonly limits: Readonly<ChatLimits>;
  private readonly store: ChatStore;
  private readonly log: Logger;
  private readonly feeds = new Map<string, RoomFeed>();

  constructor(redis: Redis, logger: Logger, limits: Partial<ChatLimits> = {}) {
    super();
    this.setMaxListeners(0);
    this.limits = { ...DEFAULT_CHAT_LIMITS, ...limits };
    this.store = new ChatStore(redis, this.limits);
    this.log = logger.withPrefix('CHAT');
  }

  /** Creates `fleet` if it is missing (first start, or a Redis that lost it). */
  async ensureFleet(): Promise<void> {
    if (await this.store.createRoom(FLEET_ROOM, ORCHESTRATOR_MEMBER.id, Date.now())) {
      this.log.info('STATE', 'chat room created', { room: FLEET_ROOM, seq: 0, by: ORCHESTRATOR_MEMBER.id });
    }
  }

  async createRoom(name: string, by: ChatMember): Promise<ChatRoom> {
    checkRoomName(name);
    if (!(await this.store.createRoom(name, by.id, Date.now()))) {
      throw new ConclaveError('CHAT-REQ-206', { detail: name, data: { room: name } });
    }
    this.log.info('STATE', 'chat room created', { room: name, seq: 0, by: by.id });
    return this.getRoom(name);
  }

  async listRooms(): Promise<ChatRoom[]> {
    const rooms = await Promise.all((await this.store.roomNames()).map((name) => this.store.room(name)));
    return rooms.filter((room): room is ChatRoom => room !== undefined);
  }

  async getRoom(name: string): Promise<ChatRoom> {
    checkRoomName(name);
    const room = await this.store.room(name);
    if (!room) throw unknownRoom(name);
    return room;
  }

  async join(room: string, member: ChatMember): Promise<ChatRoom> {
    await this.changeMembership(room, member, 'join');
    return this.getRoom(room);
  }

  async leave(room: string, member: ChatMember): Promise<ChatRoom> {
    await this.changeMembership(room, member, 'leave');
    return this.getRoom(room);
  }

  async post(member: ChatMember, post: ChatPost): Promise<ChatPosted> {
    const room = post.room ?? '';
    checkRoomName(room);
    const text = post.text ?? '';
    this.checkText(room, text);
    const clientMsgId = post.clientMsgId ?? '';
    if (clientMsgId && !CHAT_TOKEN_PATTERN.test(clientMsgId)) throw invalidToken('client_msg_id', room);
    const resource = post.resource ?? '';
    if (resource && !CHAT_TOKEN_PATTERN.test(resource)) throw invalidToken('resource', room);
    if (!resource && Number(post.fence ?? 0) > 0) throw new ConclaveError('CHAT-REQ-204', { detail: 'a fence needs its resource', data: { room } });
    return this.append(member, { room, text, clientMsgId, resource, fence: Number(post.fence ?? 0), kind: 'text' });
  }

  /**
   * A message by one of the orchestrator's own members (the assistant's answers, summaries):
   * idempotent by `clientMsgId` like a post, so a restart that redoes the work appends it once.
   */
  async postAs(member: ChatMember, room: string, text: string, clientMsgId: string, kind: 'text' | 'summary'): Promise<ChatPosted> {
    return this.append(member, { room, text: truncateUtf8(text, this.limits.maxMessageBytes), clientMsgId, resource: '', fence: 0, kind });
  }

  async claim(member: ChatMember, claim: ChatClaim): Promise<ChatClaimResult> {
    const room = claim.room ?? '';
    checkRoomName(room);
    const resource = claim.resource ?? '';
    if (!CHAT_TOKEN_PATTERN.test(resource)) throw invalidToken('resource', room);
    const ttlMs = Number(claim.ttlMs ?? 0);
    if (!Number.isSafeInteger(ttlMs) || ttlMs < MIN_CLAIM_TTL_MS || ttlMs > MAX_CLAIM_TTL_MS) {
      throw new ConclaveError('CHAT-REQ-205', { detail: `${ttlMs} ms is outside ${MIN_CLAIM_TTL_MS} ms to ${MAX_CLAIM_TTL_MS} ms`, data: { room, resource } });
    }
    const atMs = Date.now();
    const outcome = await this.withFleet(room, member, () => this.store.claim(room, member.id, member.name ?? '', resource, ttlMs, atMs, member.role === 'node'));
    if (outcome.status === 'no-room') throw unknownRoom(room);
    if (outcome.status === 'not-member') throw notMember(room, member);
    const result: ChatClaimResult = {
      ok: outcome.status === 'ok', room, resource, fence: outcome.fence, seq: outcome.seq, holder: outcome.holder, expiresAtMs: outcome.expiresAtMs,
    };
    if (outcome.status === 'held') {
      result.code = 'CHAT-STATE-702';
      this.log.debug('STATE', 'chat claim lost: resource held', { room, seq: outcome.seq, resource, holder: outcome.holder, claimant: member.id, code: 'CHAT-STATE-702' });
      return result;
    }
    if (outcome.expired) {
      this.published({
        room, seq: outcome.expired.seq, sender: ORCHESTRATOR_MEMBER.id, kind: 'expire', text: outcome.expired.holder, atMs, resource, fence: outcome.expired.fence,
      }, outcome.epoch);
    }
    this.published({
      room, seq: outcome.seq, sender: member.id, kind: 'claim', text: '', atMs, resource, fence: outcome.fence, ttlMs,
      ...(member.name ? { senderName: member.name } : {}),
    }, outcome.epoch);
    this.log.info('STATE', 'chat claim won', { room, seq: outcome.seq, resource, fence: outcome.fence, holder: member.id, ttlMs });
    return result;
  }

  async release(member: ChatMember, release: ChatRelease): Promise<ChatReleased> {
    const room = release.room ?? '';
    checkRoomName(room);
    const resource = release.resource ?? '';
    if (!CHAT_TOKEN_PATTERN.test(resource)) throw invalidToken('resource', room);
    const fence = Number(release.fence ?? 0);
    if (!Number.isSafeInteger(fence) || fence <= 0) throw new ConclaveError('CHAT-REQ-204', { detail: 'release needs the fence of the claim', data: { room, resource } });
    const atMs = Date.now();
    const outcome = await this.store.release(room, member.id, member.name ?? '', resource, fence, atMs);
    switch (outcome.status) {
      case 'no-room':
        throw unknownRoom(room);
      case 'not-claimed':
        throw new ConclaveError('CHAT-STATE-704', { detail: `${resource} in ${room}`, data: { room, resource } });
      case 'stale':
        throw staleFence(room, resource, fence, outcome);
      default:
        break;
    }
    this.published({
      room, seq: outcome.seq, sender: member.id, kind: 'release', text: '', atMs, resource, fence,
      ...(member.name ? { senderName: member.name } : {}),
    }, outcome.epoch);
    this.log.info('STATE', 'chat claim released', { room, seq: outcome.seq, resource, fence, holder: member.id });
    return { room, resource, fence, seq: outcome.seq };
  }

  async context(room: string, member: ChatMember): Promise<ChatContext> {
    const info = await this.getRoom(room);
    this.assertMember(info, member);
    return this.contextOf(info);
  }

  async history(member: ChatMember, room: string, afterSeq: number, limit: number): Promise<ChatDelivery> {
    const info = await this.getRoom(room);
    this.assertMember(info, member);
    const page = Math.min(Math.max(1, limit || MAX_HISTORY_PAGE), MAX_HISTORY_PAGE);
    const messages = withinDeliveryBytes(await this.store.range(room, afterSeq, page));
    const first = messages[0];
    if (first && Number(first.seq) > afterSeq + 1 && afterSeq > 0) {
      // Trimmed: the snapshot stands for what is gone, then the page goes on from its head.
      const snapshot = await this.contextOf(info);
      const after = messages.filter((m) => Number(m.seq) > Number(snapshot.headSeq));
      return { room, epoch: info.epoch, messages: after, snapshot, resyncReason: 'trimmed', code: 'CHAT-STATE-703' };
    }
    return { room, epoch: info.epoch, messages };
  }

  /** The rolling summary now covers the messages up to `throughSeq` (the assistant keeps it). */
  async setSummary(room: string, text: string, throughSeq: number): Promise<void> {
    await this.store.setSummary(room, truncateUtf8(text, this.limits.maxMessageBytes), throughSeq);
  }

  async subscribe(member: ChatMember, options: ChatSubscribeOptions, sink: ChatSink): Promise<ChatSubscription> {
    const info = await this.getRoom(options.room);
    this.assertMember(info, member);
    const room = info.name ?? options.room;
    const head = Number(info.headSeq);
    const firstSeq = Number(info.firstSeq);
    let feed = this.feeds.get(room);
    if (!feed) {
      feed = new RoomFeed(room, info.epoch ?? '', head, { range: (r, after, limit) => this.store.range(r, after, limit), snapshot: (r) => this.snapshotOf(r) }, this.log, (f, seq) => void this.regressed(f, seq));
      this.feeds.set(room, feed);
    } else if (feed.epoch !== info.epoch) {
      feed.reset(info.epoch ?? '', head, 'epoch');
    }
    const afterSeq = Math.max(0, Number(options.afterSeq) || 0);
    let cursor = afterSeq;
    let resync: ResyncReason | undefined;
    if (options.epoch && options.epoch !== info.epoch) resync = 'epoch';
    else if (afterSeq > head && !options.epoch) {
      // No epoch, no position to lose: `tail --from 99999` waits for that seq, and proves nothing.
      cursor = afterSeq;
    } else if (afterSeq > head) {
      resync = 'regressed';
      // Only when this orchestrator itself handed out seqs the log no longer has is it proof that
      // Redis lost its tail: then a new epoch tells every member that its cursor is void. A
      // member's word alone resynchronises that member, not the room.
      if (feed.lastSeq > head) await this.renewEpoch(room, feed, afterSeq, head);
    } else if (afterSeq === 0 && !options.epoch) cursor = Math.max(0, firstSeq - 1);
    else if (firstSeq > 0 && afterSeq + 1 < firstSeq) resync = 'trimmed';
    const activeFeed = feed;
    const subscription = new FeedSubscription(activeFeed, sink, {
      cursor, follow: options.follow, acks: options.acks, target: head,
      ...(resync ? { resync } : {}),
      onClose: () => {
        if (activeFeed.size === 0 && this.feeds.get(room) === activeFeed) this.feeds.delete(room);
      },
    }, this.log);
    activeFeed.add(subscription);
    this.log.debug('NET', 'chat member subscribed', { room, seq: cursor, member: member.id, resync, follow: options.follow });
    subscription.wake();
    return subscription;
  }

  /** Ends every subscription (orchestrator shutdown). */
  close(): void {
    for (const feed of this.feeds.values()) feed.closeAll();
    this.feeds.clear();
  }

  private async changeMembership(room: string, member: ChatMember, change: 'join' | 'leave'): Promise<void> {
    checkRoomName(room);
    const atMs = Date.now();
    const run = () => this.store.membership(room, member.id, member.name ?? '', change, atMs);
    let outcome = await run();
    if (outcome.status === 'no-room' && room === FLEET_ROOM) {
      await this.ensureFleet();
      outcome = await run();
    }
    if (outcome.status === 'no-room') throw unknownRoom(room);
    if (outcome.seq === 0) return;
    this.published({ room, seq: outcome.seq, sender: member.id, kind: change, text: '', atMs, ...(member.name ? { senderName: member.name } : {}) }, outcome.epoch);
    this.log.info('STATE', change === 'join' ? 'chat member joined' : 'chat member left', { room, seq: outcome.seq, member: member.id, name: member.name });
  }

  private async append(member: ChatMember, p: { room: string; text: string; clientMsgId: string; resource: string; fence: number; kind: 'text' | 'summary' }): Promise<ChatPosted> {
    const atMs = Date.now();
    const outcome: PostOutcome = await this.withFleet(p.room, member, () => this.store.post({
      room: p.room, sender: member.id, senderName: member.name ?? '', text: p.text, clientMsgId: p.clientMsgId, resource: p.resource,
      fence: p.fence, atMs, requireMember: member.role === 'node', kind: p.kind,
    }));
    switch (outcome.status) {
      case 'no-room':
        throw unknownRoom(p.room);
      case 'not-member':
        throw notMember(p.room, member);
      case 'stale':
        throw staleFence(p.room, p.resource, p.fence, outcome);
      case 'dup':
        this.log.debug('REQ', 'chat post retried: first seq returned', { room: p.room, seq: outcome.seq, sender: member.id, clientMsgId: p.clientMsgId });
        return { room: p.room, seq: outcome.seq, sender: member.id, clientMsgId: p.clientMsgId, duplicate: true, atMs: 0 };
      default:
        break;
    }
    const message: ChatMessage = { room: p.room, seq: outcome.seq, sender: member.id, kind: p.kind, text: p.text, atMs };
    if (member.name) message.senderName = member.name;
    if (p.clientMsgId) message.clientMsgId = p.clientMsgId;
    if (p.resource) {
      message.resource = p.resource;
      message.fence = p.fence;
    }
    this.published(message, outcome.epoch);
    this.log.debug('REQ', 'chat message appended', { room: p.room, seq: outcome.seq, sender: member.id, kind: p.kind, bytes: Buffer.byteLength(p.text) });
    return { room: p.room, seq: outcome.seq, sender: member.id, clientMsgId: p.clientMsgId, duplicate: false, atMs };
  }

  /**
   * `fleet` is always there: a Redis that lost it (a new, empty one) gets it back, with the
   * member in it, on the first request that finds it missing.
   */
  private async withFleet<T extends { status: string }>(room: string, member: ChatMember, run: () => Promise<T>): Promise<T> {
    const outcome = await run();
    if (outcome.status !== 'no-room' || room !== FLEET_ROOM) return outcome;
    await this.ensureFleet();
    if (member.role === 'node') await this.changeMembership(FLEET_ROOM, member, 'join');
    return run();
  }

  /** Hands an appended message to its room's feed; `epoch` is the room's as the script read it. */
  private published(message: ChatMessage, epoch: string): void {
    this.feeds.get(message.room ?? '')?.publish(message, epoch);
    this.emit('message', message);
  }

  private async contextOf(info: ChatRoom): Promise<ChatContext> {
    const room = info.name ?? '';
    const [newest, summary] = await Promise.all([this.store.newest(room, this.limits.contextMessages), this.store.summary(room)]);
    const window = selectWindow(newest, {
      maxMessages: this.limits.contextMessages, maxTokens: this.limits.contextTokens, summaryTokens: estimateTokens(summary.text),
    });
    const last = window.messages[window.messages.length - 1];
    return {
      room, epoch: info.epoch ?? '', headSeq: last ? Number(last.seq) : Number(info.headSeq), summary: summary.text,
      summaryThroughSeq: summary.throughSeq, messages: window.messages, tokens: window.tokens,
      maxMessages: this.limits.contextMessages, maxTokens: this.limits.contextTokens,
    };
  }

  private async snapshotOf(room: string): Promise<ChatContext> {
    return this.contextOf(await this.getRoom(room));
  }

  /** A seq came back for a different message: Redis lost the room's tail (a failover, an AOF cut short). */
  private async regressed(feed: RoomFeed, seq: number): Promise<void> {
    try {
      const info = await this.getRoom(feed.room);
      await this.renewEpoch(feed.room, feed, feed.lastSeq, Number(info.headSeq), seq);
    } catch (err) {
      this.log.failure(err, { room: feed.room, seq }, 'warn');
    }
  }

  private async renewEpoch(room: string, feed: RoomFeed, memberSeq: number, head: number, reusedSeq?: number): Promise<void> {
    const epoch = randomBytes(8).toString('hex');
    await this.store.renewEpoch(room, epoch);
    this.log.warn('STATE', 'chat log went back: members resynchronise under a new epoch', {
      room, seq: head, code: 'CHAT-STATE-703', knownSeq: memberSeq, ...(reusedSeq ? { reusedSeq } : {}), epoch,
    });
    feed.reset(epoch, head, 'regressed');
  }

  private assertMember(room: ChatRoom, member: ChatMember): void {
    if (member.role === 'node' && !(room.members ?? []).includes(member.id)) throw notMember(room.name ?? '', member);
  }

  private checkText(room: string, text: string): void {
    if (text.length === 0) throw new ConclaveError('CHAT-REQ-204', { detail: 'a message needs text', data: { room } });
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > this.limits.maxMessageBytes) {
      throw new ConclaveError('CHAT-REQ-203', { detail: `${bytes} bytes, limit ${this.limits.maxMessageBytes}`, data: { room, bytes, limit: this.limits.maxMessageBytes } });
    }
  }
}

function checkRoomName(name: string): void {
  if (!CHAT_ROOM_NAME_PATTERN.test(name)) throw new ConclaveError('CHAT-REQ-202', { detail: JSON.stringify(name.slice(0, 80)), data: { room: name.slice(0, 80) } });
}

function unknownRoom(room: string): ConclaveError {
  return new ConclaveError('CHAT-REQ-201', { detail: room, data: { room } });
}

function notMember(room: string, member: ChatMember): ConclaveError {
  return new ConclaveError('CHAT-AUTH-501', { detail: `${member.id} in ${room}`, data: { room, member: member.id } });
}

function invalidToken(field: string, room: string): ConclaveError {
  return new ConclaveError('CHAT-REQ-207', { detail: `${field} must be 1-128 printable characters without spaces`, data: { room, field } });
}

function staleFence(room: string, resource: string, fence: number, current: { fence: number; holder: string }): ConclaveError {
  const now = current.fence ? `the current claim is fence ${current.fence} by ${current.holder}` : 'the resource is not claimed now';
  return new ConclaveError('CHAT-STATE-701', { detail: `fence ${fence} on ${resource}: ${now}`, data: { room, resource, fence, currentFence: current.fence } });
}

/** Cuts at a character boundary: the assistant's answers are bounded like everyone's messages. */
function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  let cut = Buffer.from(text, 'utf8').subarray(0, maxBytes).toString('utf8');
  if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1);
  return cut;
}

