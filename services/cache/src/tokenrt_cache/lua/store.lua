-- ARGV[4] key, [5] response bytes, [6] saved tokens, [7] cost, [8] now (ms), [9] ttl (ms),
-- [10] meta JSON {m: model, t: tags, s: bucket, b: bytes}, [11] semantic value,
-- [12] tenant's max entries, [13] candidates kept per bucket.
-- Atomic: concurrent stores of one key leave one entry (the last writer's).
local d, now, ttl = ARGV[4], tonumber(ARGV[8]), tonumber(ARGV[9])
prune(now, 100)
local replaced = remove(d)
local e = k('e', d)
redis.call('HSET', e, 'r', ARGV[5], 'tok', ARGV[6], 'cost', ARGV[7], 'at', now, 'exp', now + ttl)
redis.call('PEXPIRE', e, ttl)
local seq = redis.call('INCR', k('seq'))
redis.call('ZADD', k('idx'), seq, d)
redis.call('ZADD', k('exp'), now + ttl, d)
local meta = cjson.decode(ARGV[10])
redis.call('SADD', k('model', meta.m), d)
for _, t in ipairs(meta.t) do redis.call('SADD', k('tag', t), d) end
redis.call('HSET', k('meta'), d, ARGV[10])
if meta.s ~= '' then
  redis.call('HSET', k('sem', meta.s), d, ARGV[11])
  redis.call('ZADD', k('semz', meta.s), seq, d)
  local extra = redis.call('ZCARD', k('semz', meta.s)) - tonumber(ARGV[13])
  if extra > 0 then
    local gone = redis.call('ZPOPMIN', k('semz', meta.s), extra)
    for i = 1, #gone, 2 do redis.call('HDEL', k('sem', meta.s), gone[i]) end
  end
end
redis.call('HINCRBY', k('stats'), 'stores', 1)
redis.call('HINCRBY', k('stats'), 'bytes', tonumber(meta.b))
redis.call('SADD', registry, ns)
local evicted = 0
local over = redis.call('ZCARD', k('idx')) - tonumber(ARGV[12])
if over > 0 then
  for _, o in ipairs(redis.call('ZRANGE', k('idx'), 0, over - 1)) do
    evicted = evicted + remove(o)
  end
  redis.call('HINCRBY', k('stats'), 'evictions', evicted)
end
return {replaced, evicted}
