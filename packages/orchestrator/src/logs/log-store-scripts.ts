/**
 * Appends a batch of log entries to the fleet stream and their references to the index streams
 * in one step, so that an index never names a record the fleet stream never had, and the index
 * entries carry the fleet stream's ids (a follower of one job resumes with the same ids as a
 * follower of the fleet). An index entry is only a reference (`r 1`): the record itself is kept
 * once, in the fleet stream, under its cap; a reference whose record was trimmed reads as a gap.
 *   KEYS[1]    the fleet stream
 *   KEYS[2…]   index streams (a node's, jobs') and, for a node's batch, its seq key
 *   ARGV[1]    MAXLEN ~ of the fleet stream
 *   ARGV[2]    MAXLEN ~ of a node's stream
 *   ARGV[3]    MAXLEN ~ of a job's stream
 *   ARGV[4]    MINID ~ for the age cut (ms part of the oldest id kept)
 *   ARGV[5]    TTL of a node's stream and seq key, seconds (the log age)
 *   ARGV[6]    TTL of a job's stream, seconds
 *   ARGV[7]    index into KEYS of the node's seq key, 0 for none
 *   ARGV[8]    the seq the node's batch reaches (stored when larger than the stored one)
 *   ARGV[9]    1 when the node's sequence restarted: the stored seq is set to ARGV[10] first
 *   ARGV[10]   the stored seq to start from after a restart
 *   ARGV[11]   number of entries; then per entry 4 values:
 *              the entry's JSON, its seq (0 for none), index into KEYS of its node stream (0 for
 *              none), index into KEYS of its job stream (0 for none)
 * Returns: the ids given, in entry order, "" for an entry skipped as already stored (a seq at
 * or below the node's stored seq: a batch sent again after a lost ack).
 */
export const APPEND_LOGS_SCRIPT = `
local seqKey = tonumber(ARGV[7])
local stored = 0
if seqKey > 0 then
  if ARGV[9] == '1' then redis.call('SET', KEYS[seqKey], ARGV[10]) end
  stored = tonumber(redis.call('GET', KEYS[seqKey]) or '0')
end
local ids = {}
local touchedNodes = {}
local n = tonumber(ARGV[11])
for i = 0, n - 1 do
  local base = 12 + i * 4
  local json = ARGV[base]
  local seq = tonumber(ARGV[base + 1])
  local nodeKey = tonumber(ARGV[base + 2])
  local jobKey = tonumber(ARGV[base + 3])
  if seq > 0 and seq <= stored then
    ids[#ids + 1] = ''
  else
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', json)
    if nodeKey > 0 then
      redis.call('XADD', KEYS[nodeKey], 'MAXLEN', '~', ARGV[2], id, 'r', '1')
      touchedNodes[nodeKey] = true
    end
    if jobKey > 0 then
      redis.call('XADD', KEYS[jobKey], 'MAXLEN', '~', ARGV[3], id, 'r', '1')
      redis.call('EXPIRE', KEYS[jobKey], ARGV[6])
    end
    ids[#ids + 1] = id
  end
end
if seqKey > 0 then
  if tonumber(ARGV[8]) > stored then redis.call('SET', KEYS[seqKey], ARGV[8]) end
  redis.call('EXPIRE', KEYS[seqKey], ARGV[5])
end
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[4])
for key in pairs(touchedNodes) do
  redis.call('XTRIM', KEYS[key], 'MINID', '~', ARGV[4])
  redis.call('EXPIRE', KEYS[key], ARGV[5])
end
return ids
`;
