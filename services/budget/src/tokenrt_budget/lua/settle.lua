-- Commit (actual replaces the estimate) or release a reservation.
-- KEYS: 1 expiry index, 2 reservation.
-- ARGV: 1 mode ("commit" / "release"), 2 actual tokens, 3 actual cost nusd,
--       4 now ms, 5 tombstone ttl s, 6 reservation id.
-- Returns {MISSING} (unknown or expired: its hold is given back), {SETTLED, state}
-- (a retry), or {DONE, n, then per counter: limit id, used, reserved, alerted}.
local now = tonumber(ARGV[4])
local rk = KEYS[2]
local head = redis.call('HMGET', rk, 'state', 'n', 'exp')
if not head[1] then return {'MISSING'} end
if head[1] ~= 'held' then return {'SETTLED', head[1]} end
local n = tonumber(head[2])
local expired = tonumber(head[3]) <= now
local out = {'DONE', n}
for i = 1, n do
  local r = redis.call('HMGET', rk, 'k' .. i, 'a' .. i, 'm' .. i, 'f' .. i, 'w' .. i, 'nb' .. i,
                       'l' .. i)
  local ck, amount, metric = r[1], tonumber(r[2]), r[3]
  if redis.call('EXISTS', ck) == 1 then
    redis.call('HINCRBY', ck, 'reserved', -amount)
    if ARGV[1] == 'commit' and not expired then
      local actual = amount
      if metric == '1' then actual = tonumber(ARGV[2]) elseif metric == '2' then
        actual = tonumber(ARGV[3]) end
      redis.call('HINCRBY', ck, r[4], actual)
    end
  end
  out[#out + 1] = r[7]
  out[#out + 1] = used_of(ck, tonumber(r[5]), tonumber(r[6]), now)
  out[#out + 1] = tonumber(redis.call('HGET', ck, 'reserved') or '0')
  out[#out + 1] = tonumber(redis.call('HGET', ck, 'alerted') or '0')
end
redis.call('ZREM', KEYS[1], ARGV[6])
if expired then
  redis.call('DEL', rk)
  return {'MISSING'}
end
redis.call('DEL', rk)
local state = 'released'
if ARGV[1] == 'commit' then state = 'committed' end
redis.call('HSET', rk, 'state', state, 'n', 0)
redis.call('EXPIRE', rk, tonumber(ARGV[5]))
return out
