/**
 * The chat's Lua scripts. Each runs atomically on the one Redis slot of its room (every key it
 * touches carries the room's `{chat:<room>}` tag: redis-keys.ts), so the order Redis runs them in
 * is the room's order, and the orchestrator, their only caller, is the log's only writer.
 *
 * A log entry's stream id is `<seq>-0`: reading "everything after seq N" is one XRANGE, and Redis
 * itself refuses an entry whose seq is not above the last one.
 * Entry fields (empty ones are left out): s sender, n sender name, k kind, t text, a atMs,
 * c client_msg_id, r resource, f fence, l ttlMs.
 * A claim key holds `fence|seq|expiresAtMs|holder` (the holder last: ids never contain `|`,
 * but that keeps the parse safe if one did).
 */

/**
 * Shared by the scripts: appends one entry with the next seq. `INCR` gives the seq; should the
 * counter be behind the stream (the counter lost while the stream was not), XADD refuses the id,
 * and the counter moves past the stream's last id instead of ever reusing a seq.
 */
const APPEND_FUNCTION = `
local function append(seqKey, logKey, maxlen, fields)
  local seq = redis.call('INCR', seqKey)
  local args = {'XADD', logKey, 'MAXLEN', '~', maxlen, seq .. '-0'}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  local added = redis.pcall(unpack(args))
  if type(added) == 'table' and added.err then
    local info = redis.call('XINFO', 'STREAM', logKey)
    local last = '0-0'
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = info[i + 1] end
    end
    seq = tonumber(string.match(last, '^(%d+)')) + 1
    redis.call('SET', seqKey, seq)
    args[6] = seq .. '-0'
    redis.call(unpack(args))
  end
  return seq
end

local function parseClaim(value)
  local fence, seq, expiresAt, holder = string.match(value, '^(%d+)|(%d+)|(%d+)|(.*)$')
  return fence, seq, expiresAt, holder
end
`;

/**
 * Appends a text message.
 *   KEYS[1] room meta   KEYS[2] seq   KEYS[3] log   KEYS[4] members
 *   KEYS[5] the sender's client_msg_id set   KEYS[6] the claim key of ARGV[6] (a placeholder of the
 *   room when the post carries no fence)
 *   ARGV[1] sender   ARGV[2] sender name   ARGV[3] text   ARGV[4] client_msg_id or ''
 *   ARGV[5] fence or ''   ARGV[6] resource or ''   ARGV[7] atMs   ARGV[8] MAXLEN
 *   ARGV[9] '1' when the sender must be a member   ARGV[10] how long a quiet sender's ids are kept (s)
 *   ARGV[11] kind   ARGV[12] how many ids per sender are kept
 * Returns {'ok', seq, epoch} | {'dup', seq, epoch} (the first post's seq) | {'no-room'} | {'not-member'}
 *   | {'stale', fence, holder} (the resource's current claim, '' when none).
 */
export const POST_SCRIPT = `${APPEND_FUNCTION}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no-room'} end
if ARGV[9] == '1' and redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 0 then return {'not-member'} end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if ARGV[4] ~= '' then
  local seen = redis.call('ZSCORE', KEYS[5], ARGV[4])
  if seen then return {'dup', tonumber(seen), epoch} end
end
if ARGV[6] ~= '' then
  local claim = redis.call('GET', KEYS[6])
  if not claim then return {'stale', '', ''} end
  local fence, _, _, holder = parseClaim(claim)
  if fence ~= ARGV[5] or holder ~= ARGV[1] then return {'stale', fence, holder} end
end
local fields = {'s', ARGV[1], 'k', ARGV[11], 't', ARGV[3], 'a', ARGV[7]}
if ARGV[2] ~= '' then fields[#fields + 1] = 'n'; fields[#fields + 1] = ARGV[2] end
if ARGV[4] ~= '' then fields[#fields + 1] = 'c'; fields[#fields + 1] = ARGV[4] end
if ARGV[6] ~= '' then
  fields[#fields + 1] = 'r'; fields[#fields + 1] = ARGV[6]
  fields[#fields + 1] = 'f'; fields[#fields + 1] = ARGV[5]
end
local seq = append(KEYS[2], KEYS[3], ARGV[8], fields)
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[5], seq, ARGV[4])
  if redis.call('ZCARD', KEYS[5]) > tonumber(ARGV[12]) then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, 0) end
  redis.call('EXPIRE', KEYS[5], ARGV[10])
end
return {'ok', seq, epoch}
`;

/**
 * Adds or removes a member, appending a join or leave event when that changed anything.
 *   KEYS[1] room meta   KEYS[2] seq   KEYS[3] log   KEYS[4] members
 *   ARGV[1] member   ARGV[2] member name   ARGV[3] 'join' | 'leave'   ARGV[4] atMs   ARGV[5] MAXLEN
 * Returns {'ok', seq, epoch} (seq 0 when the membership was already so) | {'no-room'}.
 */
export const MEMBERSHIP_SCRIPT = `${APPEND_FUNCTION}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no-room'} end
local changed
if ARGV[3] == 'join' then changed = redis.call('SADD', KEYS[4], ARGV[1]) else changed = redis.call('SREM', KEYS[4], ARGV[1]) end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if changed == 0 then return {'ok', 0, epoch} end
local fields = {'s', ARGV[1], 'k', ARGV[3], 'a', ARGV[4]}
if ARGV[2] ~= '' then fields[#fields + 1] = 'n'; fields[#fields + 1] = ARGV[2] end
return {'ok', append(KEYS[2], KEYS[3], ARGV[5], fields), epoch}
`;

/**
 * First come, first served: the resource goes to whoever's claim Redis runs first.
 *   KEYS[1] room meta   KEYS[2] seq   KEYS[3] log   KEYS[4] members   KEYS[5] claim key
 *   KEYS[6] fence counter   KEYS[7] the resource's last-claim key
 *   ARGV[1] claimant   ARGV[2] claimant name   ARGV[3] resource   ARGV[4] ttlMs   ARGV[5] atMs
 *   ARGV[6] MAXLEN   ARGV[7] '1' when the claimant must be a member   ARGV[8] how long the last
 *   claim is remembered after the claim's own TTL (ms)
 * Returns {'ok', fence, seq, expiresAtMs, holder, epoch, expiredSeq, expiredFence, expiredHolder}
 *   (expiredSeq 0 when no expiry was logged) | {'held', fence, seq, expiresAtMs, holder, epoch}
 *   | {'no-room'} | {'not-member'}.
 * A claim that expired since the last one is logged first (kind `expire`, sender `orchestrator`),
 * so that followers see the resource change hands in order. A claim by the holder itself is held
 * too (naming it): programs that share one identity (a board's, the operators') still exclude
 * each other.
 */
export const CLAIM_SCRIPT = `${APPEND_FUNCTION}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no-room'} end
if ARGV[7] == '1' and redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 0 then return {'not-member'} end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local current = redis.call('GET', KEYS[5])
if current then
  local fence, seq, expiresAt, holder = parseClaim(current)
  return {'held', tonumber(fence), tonumber(seq), expiresAt, holder, epoch, 0, 0, ''}
end
local previous = redis.call('GET', KEYS[7])
local expiredSeq, oldFence, oldHolder = 0, '0', ''
if previous then
  oldFence, oldHolder = string.match(previous, '^(%d+)|(.*)$')
  expiredSeq = append(KEYS[2], KEYS[3], ARGV[6], {'s', 'orchestrator', 'k', 'expire', 'a', ARGV[5], 'r', ARGV[3], 'f', oldFence, 't', oldHolder})
end
local fence = redis.call('INCR', KEYS[6])
local expiresAt = tonumber(ARGV[5]) + tonumber(ARGV[4])
local fields = {'s', ARGV[1], 'k', 'claim', 'a', ARGV[5], 'r', ARGV[3], 'f', fence, 'l', ARGV[4]}
if ARGV[2] ~= '' then fields[#fields + 1] = 'n'; fields[#fields + 1] = ARGV[2] end
local seq = append(KEYS[2], KEYS[3], ARGV[6], fields)
redis.call('SET', KEYS[5], fence .. '|' .. seq .. '|' .. expiresAt .. '|' .. ARGV[1], 'NX', 'PX', ARGV[4])
redis.call('SET', KEYS[7], fence .. '|' .. ARGV[1], 'PX', tonumber(ARGV[4]) + tonumber(ARGV[8]))
return {'ok', fence, seq, tostring(expiresAt), ARGV[1], epoch, expiredSeq, tonumber(oldFence), oldHolder}
`;

/**
 * Compare-and-delete by fencing token: only the holder, with the current fence, releases.
 *   KEYS[1] room meta   KEYS[2] seq   KEYS[3] log   KEYS[4] claim key   KEYS[5] the resource's last-claim key
 *   ARGV[1] sender   ARGV[2] sender name   ARGV[3] resource   ARGV[4] fence   ARGV[5] atMs   ARGV[6] MAXLEN
 * Returns {'ok', seq, epoch} | {'no-room'} | {'not-claimed'} | {'stale', fence, holder}.
 */
export const RELEASE_SCRIPT = `${APPEND_FUNCTION}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no-room'} end
local current = redis.call('GET', KEYS[4])
if not current then return {'not-claimed'} end
local fence, _, _, holder = parseClaim(current)
if fence ~= ARGV[4] or holder ~= ARGV[1] then return {'stale', fence, holder} end
redis.call('DEL', KEYS[4], KEYS[5])
local fields = {'s', ARGV[1], 'k', 'release', 'a', ARGV[5], 'r', ARGV[3], 'f', fence}
if ARGV[2] ~= '' then fields[#fields + 1] = 'n'; fields[#fields + 1] = ARGV[2] end
return {'ok', append(KEYS[2], KEYS[3], ARGV[6], fields), redis.call('HGET', KEYS[1], 'epoch')}
`;

/**
 * Creates a room unless it exists.
 *   KEYS[1] room meta   ARGV[1] epoch   ARGV[2] createdAtMs   ARGV[3] created by
 * Returns 1 when created, 0 when it existed.
 */
export const CREATE_ROOM_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'createdAtMs', ARGV[2], 'createdBy', ARGV[3])
return 1
`;
