-- ARGV[4..] = exact keys of the candidates that passed, best first. Answers the first
-- one still stored (a semantic hit) or counts a miss.
for i = 4, #ARGV do
  local v = redis.call('HMGET', k('e', ARGV[i]), 'r', 'tok', 'cost', 'at', 'exp')
  if v[1] then
    hit(v, 'semantic_hits')
    return {ARGV[i], v[1], v[2], v[3], v[4], v[5]}
  end
end
miss()
return false
