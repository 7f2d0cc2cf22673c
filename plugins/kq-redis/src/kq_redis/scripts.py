"""The Lua scripts of the broker. Each runs atomically in Redis, so no message can be lost or
claimed twice between two of its steps, and each costs one round trip.

Times are the server's (``TIME``), so that consumers on machines with skewed clocks agree on
when a lease expires or a delayed message is due. Scores are written as ``%.6f`` strings and
compared as numbers, which makes the lease stamp a client keeps exact.
"""

#: Move due delayed messages to their queues, claim up to ``limit`` messages, ring the bell of
#: each queue that still has messages (so that the next blocked consumer wakes for them), and
#: report leases past the visibility timeout and when the next delayed message is due.
#:
#: KEYS: unacked hash, unacked index; then per queue its delayed set followed by its lists in
#: the order they are served; then each queue's bell.
#: ARGV: limit, visibility timeout (s), tag prefix, tag counter, priority steps as digits
#: ("0369"), bell TTL (s), then each queue's name as a JSON string (the routing key of its
#: unacked entries).
#: Returns {lease stamp, seconds until the next due message or '', {queue index, tag,
#: message}..., {tag, score, unacked value}... of expired leases}.
CLAIM = """
local limit = tonumber(ARGV[1])
local steps = ARGV[5]
local nsteps = #steps
local nqueues = #ARGV - 6
local stride = nsteps + 1
local bells = 2 + nqueues * stride
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)

local function chunked(command, key, args)
  for i = 1, #args, 1000 do
    redis.call(command, key, unpack(args, i, math.min(i + 999, #args)))
  end
end

-- Due delayed messages join their list at the consumer end, the earliest due first. Each
-- member is the message's wire priority digit followed by the message.
for q = 0, nqueues - 1 do
  local delayed = KEYS[3 + q * stride]
  local due = redis.call('ZRANGE', delayed, '-inf', stamp, 'BYSCORE', 'LIMIT', 0, 1000)
  for i = #due, 1, -1 do
    local wire = tonumber(string.sub(due[i], 1, 1))
    local bucket = 1
    for s = 2, nsteps do
      if tonumber(string.sub(steps, s, s)) <= wire then bucket = s end
    end
    redis.call('RPUSH', KEYS[3 + q * stride + bucket], string.sub(due[i], 2))
  end
  if #due > 0 then redis.call('ZREMRANGEBYRANK', delayed, 0, #due - 1) end
end

-- Claim every queue's most urgent list before any queue's next one, recording each message
-- in kombu's unacked hash ([message, exchange, routing key]) and index (scored by lease time).
local claimed, fields, scores = {}, {}, {}
local taken, counter = 0, tonumber(ARGV[4])
for bucket = 1, nsteps do
  for q = 0, nqueues - 1 do
    if taken >= limit then break end
    local items = redis.call('RPOP', KEYS[3 + q * stride + bucket], limit - taken)
    if items then
      for _, message in ipairs(items) do
        taken = taken + 1
        local tag = ARGV[3] .. (counter + taken)
        fields[#fields + 1] = tag
        fields[#fields + 1] = '[' .. message .. ',"",' .. ARGV[7 + q] .. ']'
        scores[#scores + 1] = stamp
        scores[#scores + 1] = tag
        claimed[#claimed + 1] = q
        claimed[#claimed + 1] = tag
        claimed[#claimed + 1] = message
      end
    end
  end
end
if taken > 0 then
  chunked('HSET', KEYS[1], fields)
  chunked('ZADD', KEYS[2], scores)
end

-- Consumers block on bells, not on the lists (a pop there would take a message out of Redis),
-- and a bell holds one ring: pass it on while messages are left, as the blocked pop of each
-- message would have. Under the limit, every list was emptied.
if taken >= limit then
  for q = 0, nqueues - 1 do
    for bucket = 1, nsteps do
      if redis.call('LLEN', KEYS[3 + q * stride + bucket]) > 0 then
        local bell = KEYS[bells + q + 1]
        redis.call('LPUSH', bell, '1')
        redis.call('LTRIM', bell, 0, 0)
        redis.call('EXPIRE', bell, ARGV[6])
        break
      end
    end
  end
end

-- Leases older than the visibility timeout: their consumer is gone (or far too slow).
local ceiling = '(' .. string.format('%.6f', now - tonumber(ARGV[2]))
local late = redis.call('ZRANGE', KEYS[2], '-inf', ceiling, 'BYSCORE', 'LIMIT', 0, 100, 'WITHSCORES')
local expired = {}
for i = 1, #late, 2 do
  expired[#expired + 1] = late[i]
  expired[#expired + 1] = late[i + 1]
  expired[#expired + 1] = redis.call('HGET', KEYS[1], late[i]) or ''
end

local next_due
for q = 0, nqueues - 1 do
  local first = redis.call('ZRANGE', KEYS[3 + q * stride], 0, 0, 'WITHSCORES')
  if first[2] and (not next_due or tonumber(first[2]) < next_due) then
    next_due = tonumber(first[2])
  end
end
local due_in = ''
if next_due then due_in = string.format('%.6f', next_due - now) end
return {stamp, due_in, claimed, expired}
"""

#: Publish: push a message and ring its queue's bell, in one command (cheaper for the client
#: than four). KEYS: the list, the bell. ARGV: message, bell TTL (s).
PUSH = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, 0)
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""

#: Give a leased message back (to its queue, or to a dead-letter queue), only if the lease is
#: still the one the caller knows: a lease another consumer restored or re-took meanwhile has
#: another score, and then nothing happens.
#:
#: KEYS: unacked hash, unacked index, then the lists to push the message onto (none: drop it).
#: ARGV: tag, lease score, message, 'R' to push at the consumer end (served next) or 'L'.
#: Returns 1 if the lease was still held, else 0.
GIVE_BACK = """
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
local push = 'LPUSH'
if ARGV[4] == 'R' then push = 'RPUSH' end
for i = 3, #KEYS do redis.call(push, KEYS[i], ARGV[3]) end
return 1
"""

#: Count (COUNT) or delete (PURGE) a queue's ready messages: its lists plus delayed messages
#: already due, which the next fetch would move to the lists anyway.
#: KEYS: the delayed set, then the queue's lists. ARGV: 'COUNT' or 'PURGE'.
READY = """
local t = redis.call('TIME')
local now = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
local total = redis.call('ZCOUNT', KEYS[1], '-inf', now)
for i = 2, #KEYS do total = total + redis.call('LLEN', KEYS[i]) end
if ARGV[1] == 'PURGE' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if #KEYS > 1 then redis.call('DEL', unpack(KEYS, 2)) end
end
return total
"""

#: Copy a message into every live subscriber's private queue, first forgetting subscribers whose
#: registration expired (their process died without unsubscribing) along with their queues.
#: KEYS: the channel's subscriber set. ARGV: message, key prefix, the suffix of the list the
#: message goes to, the prefix of a queue's bell key (its name follows), the bell TTL (s), then
#: the suffixes of all of a queue's lists.
#: Returns how many subscribers got a copy.
BROADCAST = """
local t = redis.call('TIME')
local now = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
local dead = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE')
for _, queue in ipairs(dead) do
  for i = 6, #ARGV do redis.call('DEL', ARGV[2] .. queue .. ARGV[i]) end
end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, queue in ipairs(live) do
  redis.call('LPUSH', ARGV[2] .. queue .. ARGV[3], ARGV[1])
  local bell = ARGV[4] .. queue
  redis.call('LPUSH', bell, '1')
  redis.call('LTRIM', bell, 0, 0)
  redis.call('EXPIRE', bell, ARGV[5])
end
return #live
"""
