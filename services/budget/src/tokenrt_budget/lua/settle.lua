-- Commit (actual replaces the estimate) or release a reservation.
-- KEYS: 1 expiry index, 2 reservation, 3 catch-up hash, 4 counted set (see note_commit).
-- ARGV: 1 mode ("commit" / "release"), 2 actual tokens, 3 actual cost nusd,
--       4 now ms, 5 tombstone ttl s, 6 reservation id.
-- Returns {MISSING} (unknown or expired: its hold is given back), {SETTLED, state}
-- (a retry), or {DONE, n, then per counter: limit id, used, reserved, alerted}.
local now = tonumber(ARGV[4])
local rk = KEYS[2]
local head = redis.call('HMGET', rk, 'state', 'exp', 'at', 'd')
if not head[1] then return {'MISSING'} end
if head[1] ~= 'held' then return {'SETTLED', head[1]} end
local expired = tonumber(head[2]) <= now
local commit = ARGV[1] == 'commit' and not expired
local charge = commit and note_commit(KEYS[3], KEYS[4], ARGV[6])
local at = tonumber(head[3])
local held = cjson.decode(head[4])
local out = {'DONE', #held}
for _, c in ipairs(held) do
  local ck, amount, metric, bucket_ms, nb = c[1], tonumber(c[2]), c[3], c[4], c[5]
  local used, reserved, alerted, exists = read_counter(ck, bucket_ms, nb, now)
  if exists then
    if amount ~= 0 then redis.call('HINCRBY', ck, 'reserved', -amount) end
    reserved = reserved - amount
    if charge then
      local actual = amount
      if metric == 1 then actual = tonumber(ARGV[2]) elseif metric == 2 then
        actual = tonumber(ARGV[3]) end
      used = used + add_used(ck, actual, bucket_ms, nb, at, now)
    end
  end
  out[#out + 1] = c[6]
  out[#out + 1] = used
  out[#out + 1] = reserved
  out[#out + 1] = alerted
end
redis.call('ZREM', KEYS[1], ARGV[6])
redis.call('DEL', rk)
if expired then return {'MISSING'} end
local state = 'released'
if commit then state = 'committed' end
redis.call('HSET', rk, 'state', state)
redis.call('EXPIRE', rk, tonumber(ARGV[5]))
return out
