-- ARGV[4..] = exact keys of the candidates that passed, best first. Answers the first
-- one still stored, or nothing; the caller counts the outcome.
for i = 4, #ARGV do
  local v = redis.call('HMGET', k('e', ARGV[i]), 'r', 'tok', 'cost', 'at', 'exp')
  if v[1] then
    return {ARGV[i], v[1], v[2], v[3], v[4], v[5]}
  end
end
return false
