-- Record that a counter reached a level; true only for the first caller per level.
-- KEYS: 1 counter. ARGV: 1 level.
local prior = tonumber(redis.call('HGET', KEYS[1], 'alerted') or '0')
if prior >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'alerted', ARGV[1])
return 1
