import { once } from 'node:events';
import { ConclaveError, statusNameOfGrpc, type StatusName } from '@conclave/common';
import type {
  AddModelHeader,
  ChatClaim,
  ChatClaimResult__Output,
  ChatContext__Output,
  ChatDelivery__Output,
  ChatPost,
  ChatPosted__Output,
  ChatRelease,
  ChatReleased__Output,
  ChatRoom__Output,
  ChatRooms__Output,
  ControlClient,
  Job__Output,
  JoinToken__Output,
  ListJobsRequest,
  ListJobsResponse__Output,
  ListJoinTokensResponse__Output,
  ListModelsResponse__Output,
  ListNodesResponse__Output,
  LogEntries__Output,
  LogQuery,
  ModelInfo__Output,
  NodeInfo__Output,
  SubmitJobRequest,
} from '@conclave/protocol';
import { isTerminalState } from './job-view.js';

/**
 * The Control API as the commands use it: promises, deadlines, and errors
 * already mapped. Commands take this interface so tests can hand them a fake.
 */
export interface ControlCalls {
  readonly address: string;
  submitJob(request: SubmitJobRequest): Promise<Job__Output>;
  getJob(id: string): Promise<Job__Output>;
  /** One page, newest first; `nextPageToken` empty on the last. */
  listJobs(request: ListJobsRequest): Promise<ListJobsResponse__Output>;
  cancelJob(id: string): Promise<Job__Output>;
  /** Follows the job until a terminal state and resolves with that state; `onUpdate` sees every change. */
  watchJob(id: string, onUpdate?: (job: Job__Output) => void): Promise<Job__Output>;
  listNodes(): Promise<NodeInfo__Output[]>;
  /** By id or name; ORCH-SCHED-854 for neither, ORCH-SCHED-855 for a name several nodes have. */
  getNode(idOrName: string): Promise<NodeInfo__Output>;
  listModels(): Promise<ModelInfo__Output[]>;
  /** ORCH-LOAD-106 while queued or running jobs need it, unless `force`. */
  removeModel(name: string, force: boolean): Promise<ModelInfo__Output>;
  /** Sends the header, then the chunks in order, honouring back-pressure. */
  addModel(header: AddModelHeader, chunks: AsyncIterable<Uint8Array>): Promise<ModelInfo__Output>;
  /** `ttlSeconds` 0 or absent: the orchestrator's default. The answer alone carries the join string. */
  createJoinToken(ttlSeconds?: number): Promise<JoinToken__Output>;
  listJoinTokens(): Promise<JoinToken__Output[]>;
  revokeJoinToken(id: string): Promise<JoinToken__Output>;
  approveNode(id: string): Promise<NodeInfo__Output>;
  revokeNode(id: string): Promise<NodeInfo__Output>;
  drainNode(id: string): Promise<NodeInfo__Output>;
  undrainNode(id: string): Promise<NodeInfo__Output>;
  /** CHAT-REQ-206 (ALREADY_EXISTS) when it exists. */
  createRoom(room: string): Promise<ChatRoom__Output>;
  listRooms(): Promise<ChatRoom__Output[]>;
  /** Posts as the operator; a repeated `clientMsgId` answers the first post's seq (`duplicate`). */
  postMessage(post: ChatPost): Promise<ChatPosted__Output>;
  /** A claim held by someone else is an answer (`ok: false`, the holder), not a rejection. */
  claimResource(claim: ChatClaim): Promise<ChatClaimResult__Output>;
  releaseResource(release: ChatRelease): Promise<ChatReleased__Output>;
  getRoomContext(room: string): Promise<ChatContext__Output>;
  /**
   * Streams a room's log after `afterSeq` to `onDelivery`, in seq order; with `follow` until
   * `cancel()`, else until the head the orchestrator had when the call started.
   */
  followRoom(request: FollowRoomRequest, onDelivery: (delivery: ChatDelivery__Output) => void): RoomFollow;
  /**
   * Streams the fleet log store's records that match `query` to `onEntries`; with `follow` until
   * `cancel()` (or, following a job, until it ends), else until the history is sent.
   */
  tailLogs(query: LogQuery, onEntries: (entries: LogEntries__Output) => void): RoomFollow;
  close(): void;
}

export interface FollowRoomRequest {
  room: string;
  /** Deliver the messages after this seq; 0: from the start of what the log holds. */
  afterSeq: number;
  /** The epoch `afterSeq` belongs to; absent for a first read. */
  epoch?: string;
  /** Keep the call open for new messages until cancelled. */
  follow: boolean;
}

/** A running FollowRoom call. */
export interface RoomFollow {
  /**
   * Resolves when the call ends without an error: the orchestrator ended it (at the head, without
   * follow), or `cancel()` did. Rejects with the mapped error otherwise, a server that went away
   * while following included.
   */
  readonly done: Promise<void>;
  /** Ends the call; `done` then resolves. Idempotent. */
  cancel(): void;
}

export interface ControlCallsOptions {
  /** Used in error messages: "orchestrator unreachable: 127.0.0.1:7400 …". */
  address: string;
  /**
   * Deadline of each unary call. Without one, a call to an address that
   * accepts but never answers would hang the CLI.
   * @default 5000
   */
  deadlineMs?: number;
}

export const DEFAULT_DEADLINE_MS = 5_000;

/** An error the orchestrator returned, with the catalog code it put at the start of the status details. */
export class ControlCallError extends Error {
  override readonly name = 'ControlCallError';

  constructor(
    readonly status: StatusName,
    /** The catalog code (e.g. `ORCH-REQ-202`), when the server sent one. */
    readonly code: string | undefined,
    /** The details without the code. */
    readonly details: string,
    options?: { cause?: unknown },
  ) {
    super(code ? `${code} ${details}` : `${status} ${details}`, options);
  }
}

/** The shape of a grpc-js ServiceError; duck-typed so that this package needs no grpc-js import. */
interface ServiceErrorLike {
  code: number;
  details?: string;
  message: string;
  metadata?: { get(key: string): unknown[] };
}

/** Metadata key the orchestrator also sets to the catalog code (grpc-errors.ts). */
const CODE_METADATA_KEY = 'conclave-error-code';

function isServiceErrorLike(err: unknown): err is ServiceErrorLike {
  return err instanceof Error && typeof (err as Partial<ServiceErrorLike>).code === 'number';
}

const LEADING_CODE = /^((?:ORCH|NODE|CHAT|MODEL)-[A-Z]+-\d{3})\b[:\s]*/;

const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;

/**
 * Maps a gRPC failure: a coded server error becomes a ControlCallError; an
 * uncoded UNAVAILABLE or DEADLINE_EXCEEDED means nothing answered at
 * `address`, which is ORCH-NET-650.
 */
export function fromServiceError(err: unknown, address: string, deadlineMs?: number): Error {
  if (!isServiceErrorLike(err)) return err instanceof Error ? err : new Error(String(err));
  const details = (err.details ?? err.message).trim();
  const match = LEADING_CODE.exec(details);
  const status = statusNameOfGrpc(err.code);
  if (match?.[1]) return new ControlCallError(status, match[1], details.slice(match[0].length), { cause: err });
  const metadataCode = err.metadata?.get(CODE_METADATA_KEY)[0];
  if (typeof metadataCode === 'string' && metadataCode !== '') {
    return new ControlCallError(status, metadataCode, details, { cause: err });
  }
  if (err.code === GRPC_UNAVAILABLE) {
    return new ConclaveError('ORCH-NET-650', { detail: `${address}: ${connectionReason(details)}`, data: { address }, cause: err });
  }
  if (err.code === GRPC_DEADLINE_EXCEEDED && deadlineMs !== undefined) {
    return new ConclaveError('ORCH-NET-650', {
      detail: `${address}: no answer within ${deadlineMs} ms`,
      data: { address },
      cause: err,
    });
  }
  return new ControlCallError(status, undefined, details, { cause: err });
}

/**
 * grpc-js says "No connection established. Last error: Error: connect
 * ECONNREFUSED 127.0.0.1:7400. Resolution note: "; the operator needs the middle.
 */
function connectionReason(details: string): string {
  const reason = details
    .replace(/^No connection established\.\s*Last error:\s*(?:Error:\s*)?/, '')
    .replace(/\.?\s*Resolution note:.*$/s, '')
    .trim();
  return reason === '' ? details : reason;
}

type UnaryCallback<T> = (err: unknown, value?: T) => void;

/** Wraps a ControlClient from `createControlClient()`. */
export function controlCallsFromClient(client: ControlClient, options: ControlCallsOptions): ControlCalls {
  const { address } = options;
  const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const unary = <T>(start: (callOptions: { deadline: number }, callback: UnaryCallback<T>) => void): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      start({ deadline: Date.now() + deadlineMs }, (err, value) => {
        if (err) reject(fromServiceError(err, address, deadlineMs));
        else resolve(value as T);
      });
    });

  return {
    address,
    submitJob: (request) => unary<Job__Output>((o, cb) => client.SubmitJob(request, o, cb)),
    getJob: (id) => unary<Job__Output>((o, cb) => client.GetJob({ id }, o, cb)),
    listJobs: (request) => unary<ListJobsResponse__Output>((o, cb) => client.ListJobs(request, o, cb)),
    cancelJob: (id) => unary<Job__Output>((o, cb) => client.CancelJob({ id }, o, cb)),
    listNodes: async () => (await unary<ListNodesResponse__Output>((o, cb) => client.ListNodes({}, o, cb))).nodes,
    getNode: (id) => unary<NodeInfo__Output>((o, cb) => client.GetNode({ id }, o, cb)),
    listModels: async () => (await unary<ListModelsResponse__Output>((o, cb) => client.ListModels({}, o, cb))).models,
    removeModel: (name, force) => unary<ModelInfo__Output>((o, cb) => client.RemoveModel({ name, force }, o, cb)),
    createJoinToken: (ttlSeconds = 0) => unary<JoinToken__Output>((o, cb) => client.CreateJoinToken({ ttlSeconds }, o, cb)),
    listJoinTokens: async () =>
      (await unary<ListJoinTokensResponse__Output>((o, cb) => client.ListJoinTokens({}, o, cb))).tokens,
    revokeJoinToken: (id) => unary<JoinToken__Output>((o, cb) => client.RevokeJoinToken({ id }, o, cb)),
    approveNode: (id) => unary<NodeInfo__Output>((o, cb) => client.ApproveNode({ id }, o, cb)),
    revokeNode: (id) => unary<NodeInfo__Output>((o, cb) => client.RevokeNode({ id }, o, cb)),
    drainNode: (id) => unary<NodeInfo__Output>((o, cb) => client.DrainNode({ id }, o, cb)),
    undrainNode: (id) => unary<NodeInfo__Output>((o, cb) => client.UndrainNode({ id }, o, cb)),
    createRoom: (room) => unary<ChatRoom__Output>((o, cb) => client.CreateRoom({ room }, o, cb)),
    listRooms: async () => (await unary<ChatRooms__Output>((o, cb) => client.ListRooms({}, o, cb))).rooms,
    postMessage: (post) => unary<ChatPosted__Output>((o, cb) => client.PostMessage(post, o, cb)),
    claimResource: (claim) => unary<ChatClaimResult__Output>((o, cb) => client.ClaimResource(claim, o, cb)),
    releaseResource: (release) => unary<ChatReleased__Output>((o, cb) => client.ReleaseResource(release, o, cb)),
    getRoomContext: (room) => unary<ChatContext__Output>((o, cb) => client.GetRoomContext({ room }, o, cb)),

    followRoom(request, onDelivery) {
      // No deadline: a follower stays as long as the operator wants; without follow the server
      // ends the call at the head.
      const call = client.FollowRoom({
        room: request.room, afterSeq: request.afterSeq, follow: request.follow, ...(request.epoch ? { epoch: request.epoch } : {}),
      });
      return streamCall(call, address, onDelivery);
    },

    tailLogs(query, onEntries) {
      // No deadline either: `logs -f` stays until the operator stops it.
      return streamCall(client.TailLogs(query), address, onEntries);
    },

    watchJob(id, onUpdate) {
      return new Promise<Job__Output>((resolve, reject) => {
        // No deadline: a job may queue for a long time; the orchestrator ends it at its timeout.
        const call = client.WatchJob({ id });
        let settled = false;
        const settle = (fn: () => void): void => {
          if (settled) return;
          settled = true;
          fn();
        };
        call.on('data', (job: Job__Output) => {
          onUpdate?.(job);
          if (isTerminalState(job.state)) {
            settle(() => resolve(job));
            // The server ends the stream itself; cancelling only frees the call sooner.
            call.cancel();
          }
        });
        call.on('error', (err: unknown) => settle(() => reject(fromServiceError(err, address))));
        call.on('end', () => {
          if (settled) return;
          // The stream ended without a terminal state (e.g. the orchestrator stopped): ask once more.
          unary<Job__Output>((o, cb) => client.GetJob({ id }, o, cb)).then(
            (job) => settle(() => resolve(job)),
            (err: unknown) => settle(() => reject(err)),
          );
        });
      });
    },

    addModel(header, chunks) {
      return new Promise<ModelInfo__Output>((resolve, reject) => {
        let settled = false;
        let rejectSettled: (err: unknown) => void = () => {};
        const done = new Promise<void>((_resolve, rejectDone) => {
          rejectSettled = rejectDone;
        });
        done.catch(() => {});
        const call = client.AddModel((err, info) => {
          settled = true;
          if (err) {
            const mapped = fromServiceError(err, address);
            rejectSettled(mapped);
            reject(mapped);
          } else if (info) {
            resolve(info);
          } else {
            reject(new Error('AddModel answered without a model'));
          }
        });
        const send = async (): Promise<void> => {
          call.write({ header });
          for await (const chunk of chunks) {
            if (settled) return;
            if (!call.write({ data: chunk })) await Promise.race([once(call, 'drain'), done]);
          }
          call.end();
        };
        send().catch((err: unknown) => {
          if (settled) return;
          settled = true;
          call.cancel();
          reject(err);
        });
      });
    },

    close: () => client.close(),
  };
}

/** A server-streaming call as a RoomFollow: every message to `onMessage` until the end, an error, or cancel(). */
function streamCall<T>(
  call: NodeJS.EventEmitter & { cancel(): void },
  address: string,
  onMessage: (message: T) => void,
): RoomFollow {
  let cancelled = false;
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (message: T) => {
      if (!cancelled) onMessage(message);
    });
    call.on('error', (err: unknown) => {
      if (cancelled) resolve();
      else reject(fromServiceError(err, address));
    });
    // After the last 'data' (grpc-js emits 'status' at once, possibly before buffered data);
    // an error status came as 'error' first, and the promise is settled by then.
    call.on('end', () => resolve());
  });
  return {
    done,
    cancel: () => {
      if (cancelled) return;
      cancelled = true;
      call.cancel();
    },
  };
}
