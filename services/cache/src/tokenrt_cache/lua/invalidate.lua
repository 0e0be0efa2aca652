-- ARGV[4] selector ('key', 'tag', 'model' or 'all'), [5] its value, [6] now (ms),
-- [7] most entries to remove in this call. Returns {removed, looked at}; the caller
-- repeats while `looked at` reaches the limit.
local kind, value, limit = ARGV[4], ARGV[5], tonumber(ARGV[7])
prune(tonumber(ARGV[6]), 1000)
local ds
if kind == 'key' then
  ds = {value}
elseif kind == 'all' then
  ds = redis.call('ZRANGE', k('idx'), 0, limit - 1)
else
  ds = redis.call('SRANDMEMBER', k(kind, value), limit)
end
local n = 0
for _, d in ipairs(ds) do n = n + remove(d) end
if kind == 'tag' or kind == 'model' then
  for _, d in ipairs(ds) do redis.call('SREM', k(kind, value), d) end
end
return {n, #ds}
