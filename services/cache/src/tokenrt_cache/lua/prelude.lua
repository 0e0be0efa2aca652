-- Shared by every cache script. ARGV[1] = the tenant's key base `<prefix>:{<namespace>}`,
-- ARGV[2] = the registry of namespaces, ARGV[3] = the namespace. Every key a script
-- touches starts with the base, so one tenant's keys share a hash slot.
local base, registry, ns = ARGV[1], ARGV[2], ARGV[3]
local function k(...) return base .. ':' .. table.concat({...}, ':') end

-- Remove one entry and every index that names it; 1 when it had an entry.
local function remove(d)
  local m = redis.call('HGET', k('meta'), d)
  local gone = redis.call('DEL', k('e', d))
  redis.call('ZREM', k('idx'), d)
  redis.call('ZREM', k('exp'), d)
  -- Without its meta (evicted by an allkeys policy) only the entry itself can go.
  if not m then return gone end
  redis.call('HDEL', k('meta'), d)
  local meta = cjson.decode(m)
  redis.call('SREM', k('model', meta.m), d)
  for _, t in ipairs(meta.t) do redis.call('SREM', k('tag', t), d) end
  if meta.s ~= '' then
    redis.call('HDEL', k('sem', meta.s), d)
    redis.call('ZREM', k('semz', meta.s), d)
  end
  redis.call('HINCRBY', k('stats'), 'bytes', -tonumber(meta.b))
  return 1
end

-- Drop the indexes of entries whose TTL has passed (Redis expired the entries).
local function prune(now, limit)
  local old = redis.call('ZRANGEBYSCORE', k('exp'), '-inf', now, 'LIMIT', 0, limit)
  for _, d in ipairs(old) do remove(d) end
  return #old
end
