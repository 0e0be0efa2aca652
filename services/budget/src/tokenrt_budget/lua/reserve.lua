-- Reserve on every limit of a chain, all or nothing.
-- KEYS: 1 ready marker, 2 limits version, 3 expiry index, 4 reservation, 5 idempotency,
--       5+i counter of limit i.
-- ARGV: 1 now ms, 2 ttl ms, 3 reservation id, 4 dry run (0/1), 5 expected version,
--       6 idempotency (0/1), 7 idempotency fingerprint, 8 reservation key prefix,
--       9 n limits, then 8 per limit: limit, need, blocking (0/1), metric, bucket ms,
--       buckets, counter ttl s (0 = none), limit id.
-- Returns {status, ...}: EMPTY (rebuild first), STALE (reload limits),
-- IDEM fingerprint reservation_id, or OK/REFUSED followed per limit by
-- used, reserved, alerted, retry ms.
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'EMPTY'} end
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[5] then return {'STALE'} end
sweep(KEYS[3], ARGV[8], now, 64)
if ARGV[6] == '1' then
  local prior = redis.call('HMGET', KEYS[5], 'fp', 'rid')
  if prior[1] then return {'IDEM', prior[1], prior[2]} end
end
local n = tonumber(ARGV[9])
local out = {'OK'}
local refused = false
local used, reserved = {}, {}
for i = 1, n do
  local b = 9 + (i - 1) * 8
  local ck = KEYS[5 + i]
  local limit, need, blocking = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), ARGV[b + 3]
  local bucket_ms, nb = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])
  used[i] = used_of(ck, bucket_ms, nb, now)
  reserved[i] = tonumber(redis.call('HGET', ck, 'reserved') or '0')
  local retry = 0
  if used[i] + reserved[i] + need > limit then
    if blocking == '1' then refused = true end
    if bucket_ms > 0 then
      retry = rolling_wait(ck, bucket_ms, nb, now, used[i] + reserved[i] + need - limit)
    end
  end
  out[#out + 1] = used[i]
  out[#out + 1] = reserved[i]
  out[#out + 1] = tonumber(redis.call('HGET', ck, 'alerted') or '0')
  out[#out + 1] = retry
end
if refused then out[1] = 'REFUSED' return out end
if ARGV[4] == '1' then return out end
local rk = KEYS[4]
local fields = {'state', 'held', 'n', n, 'exp', now + tonumber(ARGV[2]), 'at', now}
for i = 1, n do
  local b = 9 + (i - 1) * 8
  local ck = KEYS[5 + i]
  local need, bucket_ms = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 5])
  redis.call('HINCRBY', ck, 'reserved', need)
  local ttl = tonumber(ARGV[b + 7])
  if ttl > 0 then redis.call('EXPIRE', ck, ttl, 'NX') end
  local f = 'used'
  if bucket_ms > 0 then f = 'b' .. math.floor(now / bucket_ms) end
  for _, v in ipairs({'k' .. i, ck, 'a' .. i, need, 'm' .. i, ARGV[b + 4], 'f' .. i, f,
                      'w' .. i, bucket_ms, 'nb' .. i, ARGV[b + 6], 'l' .. i, ARGV[b + 8]}) do
    fields[#fields + 1] = v
  end
  out[2 + (i - 1) * 4 + 1] = reserved[i] + need
end
redis.call('HSET', rk, unpack(fields))
redis.call('PEXPIRE', rk, tonumber(ARGV[2]) + 3600000)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[3])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[5], 'fp', ARGV[7], 'rid', ARGV[3])
  redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[2]))
end
return out
