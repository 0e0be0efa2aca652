-- Shared by every budget script (prepended at load time).
--
-- A counter hash: used (committed; for rolling windows the sum of the live buckets),
-- reserved (held by unsettled reservations), alerted (highest level alerted), and for
-- rolling windows lo (oldest bucket index that may hold usage) and b<index> buckets.
-- A reservation hash: state (held / committed / released), exp (ms), d (JSON list of
-- {counter key, amount held, metric, bucket ms, buckets, limit id, bucket index}).

-- Reads a counter, first dropping rolling buckets that left the window.
-- Returns used, reserved, alerted, whether the counter exists.
local function read_counter(ck, bucket_ms, nb, now)
  local v = redis.call('HMGET', ck, 'used', 'reserved', 'alerted', 'lo')
  local used = tonumber(v[1] or '0')
  if bucket_ms > 0 and v[4] then
    local first = math.floor(now / bucket_ms) - nb + 1
    local lo = tonumber(v[4])
    if lo < first then
      if first - lo > nb then  -- idle for longer than the window: scan every bucket
        used = 0
        local flat = redis.call('HGETALL', ck)
        for j = 1, #flat, 2 do
          local name = flat[j]
          if string.sub(name, 1, 1) == 'b' then
            if tonumber(string.sub(name, 2)) < first then
              redis.call('HDEL', ck, name)
            else
              used = used + tonumber(flat[j + 1])
            end
          end
        end
      else
        for idx = lo, first - 1 do
          local b = redis.call('HGET', ck, 'b' .. idx)
          if b then
            used = used - tonumber(b)
            redis.call('HDEL', ck, 'b' .. idx)
          end
        end
      end
      redis.call('HSET', ck, 'used', used, 'lo', first)
    end
  end
  return used, tonumber(v[2] or '0'), tonumber(v[3] or '0'), (v[1] or v[2] or v[3]) and true
end

-- Adds committed usage to a counter (into the bucket of `at` for rolling windows; usage
-- whose bucket already left the window is not counted).
local function add_used(ck, amount, bucket_ms, nb, at, now)
  if amount == 0 then return 0 end
  if bucket_ms == 0 then
    redis.call('HINCRBY', ck, 'used', amount)
    return amount
  end
  local idx = math.floor(at / bucket_ms)
  if idx < math.floor(now / bucket_ms) - nb + 1 then return 0 end
  redis.call('HINCRBY', ck, 'b' .. idx, amount)
  redis.call('HINCRBY', ck, 'used', amount)
  local lo = redis.call('HGET', ck, 'lo')
  if not lo or tonumber(lo) > idx then redis.call('HSET', ck, 'lo', idx) end
  return amount
end

-- Gives back the holds of expired reservations (at most max of them).
local function sweep(rexp, rprefix, now, max)
  local ids = redis.call('ZRANGEBYSCORE', rexp, '-inf', now, 'LIMIT', 0, max)
  for _, id in ipairs(ids) do
    local rk = rprefix .. id
    local head = redis.call('HMGET', rk, 'state', 'd')
    if head[1] == 'held' then
      for _, c in ipairs(cjson.decode(head[2])) do
        local amount = tonumber(c[2])
        -- a zero hold is skipped: Lua's -0 reaches Redis as "-0", which HINCRBY refuses
        if amount ~= 0 and redis.call('EXISTS', c[1]) == 1 then
          redis.call('HINCRBY', c[1], 'reserved', -amount)
        end
      end
    end
    redis.call('DEL', rk)
    redis.call('ZREM', rexp, id)
  end
  return #ids
end

-- For a rolling window: ms until enough buckets leave the window to free `excess`.
local function rolling_wait(ck, bucket_ms, nb, now, excess)
  local cur = math.floor(now / bucket_ms)
  local freed = 0
  for idx = cur - nb + 1, cur do
    freed = freed + tonumber(redis.call('HGET', ck, 'b' .. idx) or '0')
    if freed >= excess then
      return (idx + nb) * bucket_ms - now
    end
  end
  return nb * bucket_ms
end

-- Replaces a counter's committed usage, keeping outstanding holds: drops used, lo, the
-- rolling buckets b<index> and the catch-up bases L<name> / Lv, then sets `nf` field/value
-- pairs from args[first...] (and the alert level when restart_alerts), ttl s (0 = none).
local function replace_used(ck, restart_alerts, args, first, nf, ttl)
  local flat = redis.call('HGETALL', ck)
  for j = 1, #flat, 2 do
    local name = flat[j]
    local c = string.sub(name, 1, 1)
    if name == 'used' or name == 'lo' or c == 'b' or c == 'L' then
      redis.call('HDEL', ck, name)
    end
  end
  if restart_alerts then redis.call('HDEL', ck, 'alerted') end
  for j = first, first + 2 * nf - 1, 2 do
    redis.call('HSET', ck, args[j], args[j + 1])
  end
  redis.call('HSETNX', ck, 'reserved', 0)
  if ttl > 0 then redis.call('EXPIRE', ck, ttl) end
end

-- A commit after a counter rebuild, while its catch-up window is open (KEYS catchup hash
-- and counted set of the organization). A reservation issued before the rebuild (its id
-- carries another epoch) may also have its usage event summed by the catch-up from the
-- ledger: it is recorded in the counted set, which the catch-up leaves out, and the set's
-- version moves so that a catch-up computed without it is refused. Returns false when the
-- reservation was recorded already (a retried late commit: charge nothing again).
local function note_commit(catchup, counted, rid)
  local epoch = redis.call('HGET', catchup, 'epoch')
  if not epoch or string.sub(rid, 14, 21) == epoch then return true end
  if redis.call('SADD', counted, rid) == 0 then return false end
  redis.call('HINCRBY', catchup, 'ver', 1)
  redis.call('HDEL', catchup, 'next', 'step')  -- the next catch-up pass is due at once
  redis.call('PEXPIREAT', counted, tonumber(redis.call('HGET', catchup, 'until')))
  return true
end
