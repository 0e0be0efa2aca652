-- Shared by every budget script (prepended at load time).
-- A reservation hash holds n counters: k<i> counter key, a<i> amount held,
-- m<i> metric (1 tokens, 2 cost, 3 requests), f<i> field charged on commit
-- ("used" or a rolling bucket "b<index>"), w<i> bucket ms (0 = calendar), nb<i> buckets.

-- Gives back the holds of expired reservations (at most max of them).
local function sweep(rexp, rprefix, now, max)
  local ids = redis.call('ZRANGEBYSCORE', rexp, '-inf', now, 'LIMIT', 0, max)
  for _, id in ipairs(ids) do
    local rk = rprefix .. id
    local head = redis.call('HMGET', rk, 'state', 'n')
    if head[1] == 'held' then
      for i = 1, tonumber(head[2]) do
        local r = redis.call('HMGET', rk, 'k' .. i, 'a' .. i)
        if redis.call('EXISTS', r[1]) == 1 then
          redis.call('HINCRBY', r[1], 'reserved', -tonumber(r[2]))
        end
      end
    end
    redis.call('DEL', rk)
    redis.call('ZREM', rexp, id)
  end
  return #ids
end

-- Committed usage of a counter: the "used" field, or the live buckets of a rolling
-- window (older buckets are deleted on the way).
local function used_of(ck, bucket_ms, nb, now)
  if bucket_ms == 0 then
    return tonumber(redis.call('HGET', ck, 'used') or '0')
  end
  local cur = math.floor(now / bucket_ms)
  local total = 0
  local flat = redis.call('HGETALL', ck)
  for j = 1, #flat, 2 do
    local name = flat[j]
    if string.sub(name, 1, 1) == 'b' then
      local idx = tonumber(string.sub(name, 2))
      if idx <= cur - nb then
        redis.call('HDEL', ck, name)
      else
        total = total + tonumber(flat[j + 1])
      end
    end
  end
  return total
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
