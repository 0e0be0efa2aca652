-- Reset or rebuild a counter: replace its committed usage, keep outstanding holds.
-- KEYS: 1 counter. ARGV: 1 "1" to restart the alert level, then field/value pairs
-- ("used", and for rolling windows "lo" and buckets "b<index>"), last the counter ttl s
-- (0 = none).
local flat = redis.call('HGETALL', KEYS[1])
for j = 1, #flat, 2 do
  local name = flat[j]
  if name == 'used' or name == 'lo' or string.sub(name, 1, 1) == 'b' then
    redis.call('HDEL', KEYS[1], name)
  end
end
if ARGV[1] == '1' then redis.call('HDEL', KEYS[1], 'alerted') end
for j = 2, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1])
end
redis.call('HSETNX', KEYS[1], 'reserved', 0)
local ttl = tonumber(ARGV[#ARGV])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
