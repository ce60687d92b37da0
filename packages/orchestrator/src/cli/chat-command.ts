import { randomUUID } from 'node:crypto';
import { ConclaveError, EXIT_CLAIM_HELD, EXIT_OK, formatDurationMs } from '@conclave/common';
import {
  chatClaimJson, chatContextJson, chatMessageJson, chatPostedJson, chatReleasedJson, chatResyncJson, chatRoomJson, formatChatMessage,
} from '@conclave/protocol';
import type { ChatDelivery__Output, ChatMessage__Output, ChatRoom__Output } from '@conclave/protocol';
import type { CliIo } from './cli-io.js';
import type { ControlCalls } from './control-calls.js';
import { followAgain } from './follow-again.js';
import { formatJson, formatKeyValues, formatTable, formatTime, orDash } from './output-format.js';

/** The default of `chat claim --ttl`. */
export const DEFAULT_CLAIM_TTL_MS = 30_000;

export interface ChatJsonOption {
  json?: boolean;
}

/** `chat rooms`: `--json` is an array of chatRoomJson. */
export async function listRoomsCommand(calls: ControlCalls, io: CliIo, options: ChatJsonOption): Promise<number> {
  const rooms = await calls.listRooms();
  if (options.json) {
    io.stdout.write(formatJson(rooms.map(chatRoomJson)));
    return EXIT_OK;
  }
  if (rooms.length === 0) {
    io.stdout.write('no chat rooms; create one with `orchestrator chat create ROOM`\n');
    return EXIT_OK;
  }
  io.stdout.write(
    formatTable(
      [{ header: 'name' }, { header: 'head', align: 'right' }, { header: 'first', align: 'right' }, { header: 'members', align: 'right' }, { header: 'created by' }, { header: 'created' }],
      rooms.map((r) => [r.name, String(r.headSeq), String(r.firstSeq), String(r.members.length), orDash(r.createdBy), formatTime(Number(r.createdAtMs))]),
    ),
  );
  return EXIT_OK;
}

/** `chat create ROOM`: CHAT-REQ-206 (exit 1) when it exists. */
export async function createRoomCommand(calls: ControlCalls, io: CliIo, room: string, options: ChatJsonOption): Promise<number> {
  writeRoom(io, await calls.createRoom(room), options);
  return EXIT_OK;
}

function writeRoom(io: CliIo, room: ChatRoom__Output, options: ChatJsonOption): void {
  io.stdout.write(
    options.json
      ? formatJson(chatRoomJson(room))
      : formatKeyValues([
          ['name', room.name],
          ['epoch', orDash(room.epoch)],
          ['head', String(room.headSeq)],
          ['members', room.members.length > 0 ? room.members.join(',') : '-'],
          ['created', `${formatTime(Number(room.createdAtMs))} by ${orDash(room.createdBy)}`],
        ]),
  );
}

export interface SendOptions extends ChatJsonOption {
  room: string;
  text: string;
  /** Idempotency key: a retry with it is appended once and answers the first seq. */
  clientMsgId?: string | undefined;
}

/** `chat send ROOM TEXT`: posts as the operator; `--json` is chatPostedJson. */
export async function sendCommand(calls: ControlCalls, io: CliIo, options: SendOptions): Promise<number> {
  if (options.text === '') throw usage('TEXT is empty: a message needs text');
  // An id even when none is given, made before anything is sent: a send that gRPC or the
  // orchestrator's Redis client retries (a dropped connection) is appended once.
  const posted = await calls.postMessage({ room: options.room, text: options.text, clientMsgId: options.clientMsgId ?? randomUUID() });
  const json = chatPostedJson(posted);
  io.stdout.write(
    options.json
      ? formatJson(json)
      : formatKeyValues([
          ['room', json.room],
          ['seq', `${json.seq}${json.duplicate ? ' (a retry: the first post with this client message id)' : ''}`],
          ['sender', json.sender],
          ['client msg id', orDash(json.clientMsgId)],
        ]),
  );
  return EXIT_OK;
}

export interface TailOptions extends ChatJsonOption {
  room: string;
  /** First seq to print (inclusive); absent: from the start of what the log holds. */
  fromSeq?: number | undefined;
  /** Keep printing new messages until `interrupted` resolves. */
  follow?: boolean;
  /** Resolves when the operator asks to stop (SIGINT, SIGTERM): the follow ends, exit 0. */
  interrupted?: Promise<unknown>;
}

/**
 * `chat tail ROOM`: the room's messages in seq order, one per line — chatMessageJson with
 * `--json`, formatChatMessage without. A resynchronisation (the log no longer holds the start, or
 * was recreated) prints chatResyncJson first, then the snapshot's messages.
 */
export async function tailRoomCommand(calls: ControlCalls, io: CliIo, options: TailOptions): Promise<number> {
  const follow = options.follow ?? false;
  const writeMessage = (m: ChatMessage__Output): void => {
    const json = chatMessageJson(m);
    io.stdout.write(`${options.json ? JSON.stringify(json) : formatChatMessage(json)}\n`);
  };
  // Where the tail stands, so that a follow cut by an orchestrator restart resumes exactly there.
  let lastSeq = options.fromSeq !== undefined ? options.fromSeq - 1 : 0;
  let epoch = '';
  const onDelivery = (delivery: ChatDelivery__Output): void => {
    epoch = delivery.epoch || epoch;
    if (delivery.snapshot && delivery.resyncReason) {
      io.stdout.write(options.json ? `${JSON.stringify(chatResyncJson(delivery))}\n` : formatResync(delivery));
      for (const m of delivery.snapshot.messages) writeMessage(m);
      lastSeq = Number(delivery.snapshot.headSeq);
    }
    for (const m of delivery.messages) {
      writeMessage(m);
      lastSeq = Number(m.seq);
    }
  };
  // Without -f, or for an error retrying cannot fix, the tail ends with it.
  await followAgain({
    follow, io, ...(options.interrupted ? { interrupted: options.interrupted } : {}),
    open: () => calls.followRoom({ room: options.room, afterSeq: lastSeq, epoch, follow }, onDelivery),
    resumeAt: () => `from #${lastSeq + 1}`,
  });
  return EXIT_OK;
}


function formatResync(delivery: ChatDelivery__Output): string {
  const snapshot = delivery.snapshot;
  const head = Number(snapshot?.headSeq ?? 0);
  const summary = snapshot?.summary ? `-- summary through #${Number(snapshot.summaryThroughSeq)}: ${snapshot.summary}\n` : '';
  return `-- resynchronised (${orDash(delivery.resyncReason)}, ${orDash(delivery.code)}): the room's context up to #${head} follows\n${summary}`;
}

export interface ClaimOptions extends ChatJsonOption {
  room: string;
  resource: string;
  /** @default DEFAULT_CLAIM_TTL_MS */
  ttlMs?: number | undefined;
}

/**
 * `chat claim ROOM RESOURCE`: first come, first served. Won: `{ok: true, fence, seq, …}`, exit 0;
 * held by another member: `{ok: false, holder, seq, …}`, exit 3 (EXIT_CLAIM_HELD), so that a
 * script can tell a lost race from a failure.
 */
export async function claimCommand(calls: ControlCalls, io: CliIo, options: ClaimOptions): Promise<number> {
  const ttlMs = options.ttlMs ?? DEFAULT_CLAIM_TTL_MS;
  const result = await calls.claimResource({ room: options.room, resource: options.resource, ttlMs });
  if (options.json) {
    io.stdout.write(formatJson(chatClaimJson(result)));
  } else if (result.ok) {
    io.stdout.write(
      formatKeyValues([
        ['claimed', `${result.resource} in ${result.room}`],
        ['fence', String(result.fence)],
        ['seq', String(result.seq)],
        ['expires', `${formatTime(Number(result.expiresAtMs))} (ttl ${formatDurationMs(ttlMs)}; release with --fence ${result.fence})`],
      ]),
    );
  } else {
    io.stdout.write(
      formatKeyValues([
        ['held', `${result.resource} in ${result.room} (${orDash(result.code)})`],
        ['holder', orDash(result.holder)],
        ['seq', String(result.seq)],
        ['expires', formatTime(Number(result.expiresAtMs))],
      ]),
    );
  }
  return result.ok ? EXIT_OK : EXIT_CLAIM_HELD;
}

export interface ReleaseOptions extends ChatJsonOption {
  room: string;
  resource: string;
  /** The fencing token the claim answered with. */
  fence: number;
}

/** `chat release ROOM RESOURCE --fence N`: CHAT-STATE-701 (stale fence) or CHAT-STATE-704 (not claimed), exit 1. */
export async function releaseCommand(calls: ControlCalls, io: CliIo, options: ReleaseOptions): Promise<number> {
  const released = chatReleasedJson(await calls.releaseResource({ room: options.room, resource: options.resource, fence: options.fence }));
  io.stdout.write(
    options.json
      ? formatJson(released)
      : formatKeyValues([
          ['released', `${released.resource} in ${released.room}`],
          ['fence', String(released.fence)],
          ['seq', String(released.seq)],
        ]),
  );
  return EXIT_OK;
}

/** `chat context ROOM`: the window the orchestrator keeps (summary and newest messages); `--json` is chatContextJson. */
export async function contextCommand(calls: ControlCalls, io: CliIo, room: string, options: ChatJsonOption): Promise<number> {
  const context = await calls.getRoomContext(room);
  if (options.json) {
    io.stdout.write(formatJson(chatContextJson(context)));
    return EXIT_OK;
  }
  io.stdout.write(
    formatKeyValues([
      ['room', context.room],
      ['epoch', orDash(context.epoch)],
      ['head', String(context.headSeq)],
      ['window', `${context.messages.length}/${context.maxMessages} messages, ${context.tokens}/${context.maxTokens} tokens`],
      ['summary', context.summary ? `through #${Number(context.summaryThroughSeq)}: ${context.summary}` : '-'],
    ]),
  );
  if (context.messages.length > 0) io.stdout.write(`\n${context.messages.map((m) => formatChatMessage(chatMessageJson(m))).join('\n')}\n`);
  return EXIT_OK;
}

function usage(detail: string): ConclaveError {
  return new ConclaveError('ORCH-REQ-253', { detail });
}
