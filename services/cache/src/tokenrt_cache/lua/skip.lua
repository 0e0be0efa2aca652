-- Counts a skipped store.
redis.call('HINCRBY', k('stats'), 'skipped_stores', 1)
redis.call('SADD', registry, ns)
return 1
