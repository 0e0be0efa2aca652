-- ARGV[4] now (ms). Prunes expired entries' indexes, then returns the counters and the
-- number of entries held.
prune(tonumber(ARGV[4]), 10000)
return {redis.call('HGETALL', k('stats')), redis.call('ZCARD', k('idx'))}
