-- ARGV[4] = exact key, ARGV[5] = semantic bucket ('' = no semantic lookup).
-- A hit counts itself; a miss counts itself unless a semantic lookup follows, in which
-- case the bucket's candidates are returned for the caller to rank.
local v = redis.call('HMGET', k('e', ARGV[4]), 'r', 'tok', 'cost', 'at', 'exp')
if v[1] then
  hit(v, 'exact_hits')
  return {1, v[1], v[2], v[3], v[4], v[5]}
end
if ARGV[5] ~= '' then
  return {0, redis.call('HGETALL', k('sem', ARGV[5]))}
end
miss()
return {0}
