import { once } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { ConclaveError } from '@conclave/common';
import type { Logger } from '@conclave/common';
import type {
  ChatClaim__Output, ChatDelivery, ChatFollowRequest__Output, ChatPost__Output, ChatRelease__Output, ChatRoomRequest__Output, ControlHandlers,
} from '@conclave/protocol';
import { toServiceError, unary } from '../grpc-errors.js';
import { UNGUARDED } from '../state-store-guard.js';
import type { StateStoreGuard } from '../state-store-guard.js';
import { OPERATOR_MEMBER } from './chat-api.js';
import type { ChatApi, ChatSink, ChatSubscription } from './chat-api.js';

export interface ChatControlServiceOptions {
  chat: ChatApi;
  logger: Logger;
  /** Fails calls at once while Redis is away (ORCH-STATE-710). @default none */
  stateStore?: StateStoreGuard;
}

/** The group chat's part of the Control API (control.proto, "Group chat"). */
export type ChatControlHandlers = Pick<
  ControlHandlers,
  'CreateRoom' | 'ListRooms' | 'PostMessage' | 'FollowRoom' | 'ClaimResource' | 'ReleaseResource' | 'GetRoomContext'
>;

/**
 * The chat calls of the Control API. The operator credential is one sender: every call acts as
 * OPERATOR_MEMBER (the auth interceptor has checked the credential before a handler runs), and
 * nothing in a request can name another.
 */
export function createChatControlService(o: ChatControlServiceOptions): ChatControlHandlers {
  const { chat } = o;
  const logger = o.logger.withPrefix('CHAT');
  const guard = o.stateStore ?? UNGUARDED;
  /** A unary handler that needs Redis: refused at once while Redis is away, never left hanging. */
  const stateful = <Req, Res>(handler: (request: Req) => Promise<Res>) => unary(logger, (request: Req) => guard(() => handler(request)));

  /**
   * A room's log after `after_seq`, then, with `follow`, every new message until the caller
   * cancels; without it the call ends once the head at subscribe time has been delivered. The
   * subscription reads at the stream's pace: a write that fills grpc-js's buffer pauses it until
   * 'drain', so a slow caller costs a cursor on the orchestrator, not a queue.
   */
  function followRoom(call: grpc.ServerWritableStream<ChatFollowRequest__Output, ChatDelivery>): void {
    const { room, afterSeq, epoch, follow } = call.request;
    let ended = false;
    let subscription: ChatSubscription | undefined;
    const stopped = new AbortController();
    /** Ends the call once: with its coded status when `error` is given. */
    const finish = (error?: unknown): void => {
      if (ended) return;
      ended = true;
      stopped.abort();
      subscription?.close();
      // emit('error') sends the status to the client; destroy() would leave it hanging.
      if (error !== undefined) call.emit('error', Object.assign(new Error(), toServiceError(error, logger)));
      else call.end();
    };
    const gone = (): void => {
      if (ended) return;
      ended = true;
      stopped.abort();
      subscription?.close();
      logger.debug('NET', 'chat follower left', { room, seq: afterSeq });
    };
    call.on('cancelled', gone);
    call.on('close', gone);

    const sink: ChatSink = {
      deliver: (delivery) => {
        if (ended) return false;
        return call.write(delivery);
      },
      writable: () => {
        // The call is over: its subscription is closed (or about to be) and waits for nothing.
        if (ended) return new Promise<void>(() => {});
        if (!call.writableNeedDrain) return Promise.resolve();
        return once(call, 'drain', { signal: stopped.signal }).then(
          () => undefined,
          () => undefined,
        );
      },
    };
    let subscribing: Promise<ChatSubscription> | undefined;
    // A caller without an epoch and an after_seq past the head waits for that seq (Chat.subscribe).
    guard(() => (subscribing = chat.subscribe(OPERATOR_MEMBER, { room, afterSeq, epoch, follow, acks: false }, sink))).then(
      (s) => {
        subscription = s;
        if (ended) {
          s.close();
          return;
        }
        // Without follow the subscription stops at the head it started with; caughtUp resolves
        // after the last of those deliveries has been written, so the end comes after them.
        if (!follow) void s.caughtUp.then(() => finish());
        // Ended by the orchestrator (its shutdown): the call ends now, not at the forced shutdown,
        // as UNAVAILABLE, so that a follower resumes from its last seq elsewhere or later.
        void s.closed.then(() => finish(new ConclaveError('CHAT-NET-601', { detail: 'the orchestrator is shutting down', data: { room } })));
      },
      (err: unknown) => {
        // The guard gave up (Redis slow) while the subscribe may still succeed: close what it returns.
        subscribing?.then((s) => s.close(), () => undefined);
        finish(err);
      },
    );
  }

  return {
    CreateRoom: stateful((request: ChatRoomRequest__Output) => chat.createRoom(request.room, OPERATOR_MEMBER)),
    ListRooms: stateful(async () => ({ rooms: await chat.listRooms() })),
    PostMessage: stateful((request: ChatPost__Output) => chat.post(OPERATOR_MEMBER, request)),
    FollowRoom: followRoom,
    ClaimResource: stateful((request: ChatClaim__Output) => chat.claim(OPERATOR_MEMBER, request)),
    ReleaseResource: stateful((request: ChatRelease__Output) => chat.release(OPERATOR_MEMBER, request)),
    GetRoomContext: stateful((request: ChatRoomRequest__Output) => chat.context(request.room, OPERATOR_MEMBER)),
  };
}
