/**
 * Every Redis key the orchestrator writes, built in one place. BullMQ keeps its own
 * keys under `${KEY_PREFIX}bull:<queue>:…`.
 */
export const KEY_PREFIX = 'conclave:';

export const BULL_PREFIX = `${KEY_PREFIX}bull`;

export const JOB_QUEUE_NAME = 'jobs';

export const redisKeys = {
  /** Hash: one node's last known record (NodeInfo fields as strings). */
  node: (nodeId: string) => `${KEY_PREFIX}node:${nodeId}`,
  /** Set of every node id ever registered. */
  nodes: () => `${KEY_PREFIX}nodes`,
  /** Set of node ids an operator drained: they get no new work until undrained. */
  drainedNodes: () => `${KEY_PREFIX}drained-nodes`,
  /** Hash: one model's record (name, sha256, size, signature JSON). */
  model: (name: string) => `${KEY_PREFIX}model:${name}`,
  /** Set of model names. */
  models: () => `${KEY_PREFIX}models`,
  /** Hash: a job's record and, once done, its result; expires after the result TTL. */
  job: (jobId: string) => `${KEY_PREFIX}job:${jobId}`,
  /** String: job id for a client-chosen idempotency key. */
  clientJob: (clientJobId: string) => `${KEY_PREFIX}client-job:${clientJobId}`,
  // The job index (job-store.ts): what `jobs list` pages through and /metrics counts. The `{jobs}`
  // hash tag keeps its keys in one Redis Cluster slot, for its scripts; the job hashes above are
  // not in it (they spread over the cluster), so the index is written next to them, never with them.
  /** Sorted set: every indexed job id, by createdAtMs. */
  jobIndex: () => `${KEY_PREFIX}{jobs}:index`,
  /** Sorted set: the indexed jobs that are queued or running, by createdAtMs. */
  activeJobs: () => `${KEY_PREFIX}{jobs}:active`,
  /** Sorted set: the indexed jobs that ended, by the time their hash expires (ms); capped. */
  endedJobs: () => `${KEY_PREFIX}{jobs}:ended`,
  /** Hash: job id → `<state>|<model>` as the index last recorded it. */
  jobIndexStates: () => `${KEY_PREFIX}{jobs}:states`,
  /** Hash: `<state>|<model>` → how many indexed jobs are in that state (fields at 0 are deleted). */
  jobCounts: () => `${KEY_PREFIX}{jobs}:counts`,
  // Enrollment (enrollment-store.ts). The `{enroll}` hash tag keeps every key of the enroll
  // script in one Redis Cluster slot.
  /** Hash: one join token by id (hash, createdAtMs, expiresAtMs, used, usedBy, revoked…); expires 24 h after the token. */
  joinToken: (tokenId: string) => `${KEY_PREFIX}{enroll}:token:${tokenId}`,
  /** Sorted set: join token ids by creation time; ids whose hash expired are pruned on list. */
  joinTokens: () => `${KEY_PREFIX}{enroll}:tokens`,
  /** Hash: a node's enrollment record (status, publicKey hex, enrolledAtMs, updatedAtMs, tokenId). */
  enrolledNode: (nodeId: string) => `${KEY_PREFIX}{enroll}:node:${nodeId}`,
  /** Set of every enrolled node id. */
  enrolledNodes: () => `${KEY_PREFIX}{enroll}:nodes`,
  // Group chat (chat/). Every key of one room carries the `{chat:<room>}` hash tag, so that the
  // room's scripts (append, claim, release) touch one Redis Cluster slot.
  /** Set of every room name (its own slot: never touched by a room's scripts). */
  chatRooms: () => `${KEY_PREFIX}chat-rooms`,
  /** Hash: a room's record (epoch, createdAtMs, createdBy). Its absence means "no such room". */
  chatMeta: (room: string) => `${chatRoom(room)}:meta`,
  /** String: the room's last seq (INCR). */
  chatSeq: (room: string) => `${chatRoom(room)}:seq`,
  /** Stream: the room's log; entry ids are `<seq>-0`, trimmed with MAXLEN ~. */
  chatLog: (room: string) => `${chatRoom(room)}:log`,
  /** Set of member ids. */
  chatMembers: (room: string) => `${chatRoom(room)}:members`,
  /**
   * Sorted set: a sender's newest client_msg_ids in the room, scored by their seq; capped (an
   * outbox never holds more posts than the cap) and expiring when the sender goes quiet.
   */
  chatMessageIds: (room: string, sender: string) => `${chatRoom(room)}:msg-ids:${sender}`,
  /** String `fence|seq|expiresAtMs|holder`, with the claim's TTL: the resource is held while it exists. */
  chatClaim: (room: string, resource: string) => `${chatRoom(room)}:claim:${resource}`,
  /**
   * String `fence|holder` of a resource's last claim not released, outliving the claim by a day:
   * the next claim tells an expiry (logged) from a release. It expires, so it cannot pile up.
   */
  chatLastClaim: (room: string, resource: string) => `${chatRoom(room)}:last-claim:${resource}`,
  /** String: the room's fencing-token counter (INCR): strictly increasing across all its claims. */
  chatFence: (room: string) => `${chatRoom(room)}:fence`,
  /** Hash: the rolling summary (text, throughSeq). */
  chatSummary: (room: string) => `${chatRoom(room)}:summary`,
  // Fleet logs (logs/). Every key carries the `{logs}` hash tag: the append script writes the
  // fleet stream and its indexes in one step, so they share one Redis Cluster slot.
  /** Stream: every stored record (ORCH-, CHAT-, NODE-, MODEL-), capped by length and age. */
  logs: () => `${KEY_PREFIX}{logs}:all`,
  /** Stream: one node's records, same entry ids as in `logs`; capped. */
  nodeLogs: (nodeId: string) => `${KEY_PREFIX}{logs}:node:${nodeId}`,
  /** Stream: one job's records from the orchestrator and every node that ran it; expires with the log age. */
  jobLogs: (jobId: string) => `${KEY_PREFIX}{logs}:job:${jobId}`,
  /** String: the last seq stored for a node's shipped records (dedup of resent batches). */
  nodeLogSeq: (nodeId: string) => `${KEY_PREFIX}{logs}:seq:${nodeId}`,
} as const;

/** A room's key stem, with its hash tag. Room names are checked ([a-z0-9._-]) before they get here. */
function chatRoom(room: string): string {
  return `${KEY_PREFIX}{chat:${room}}`;
}
