-- Reserve on every limit of a chain, all or nothing.
-- KEYS: 1 ready marker, 2 limits version, 3 expiry index, 4 reservation, 5 idempotency,
--       5+i counter of limit i.
-- ARGV: 1 now ms, 2 ttl ms, 3 reservation id, 4 dry run (0/1), 5 expected version,
--       6 idempotency (0/1), 7 idempotency fingerprint, 8 reservation key prefix,
--       9 n limits, 10 the epoch the reservation id was made with (the ready marker's
--       value), then one per limit: "need blocking(0/1) limit metric bucket_ms buckets
--       expire_at(unix s, 0 = none) limit_id" (one string: far cheaper to send than 8).
-- Returns {status, ...}: EMPTY (rebuild first), EPOCH epoch (the counters were rebuilt
-- since the caller learnt the epoch: make the id again with this one), STALE (reload
-- limits), IDEM fingerprint reservation_id, or OK/REFUSED followed per limit by used,
-- reserved (after the hold), alerted, retry ms.
local now = tonumber(ARGV[1])
local epoch = redis.call('GET', KEYS[1])
if not epoch then return {'EMPTY'} end
if epoch ~= ARGV[10] then return {'EPOCH', epoch} end
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[5] then return {'STALE'} end
sweep(KEYS[3], ARGV[8], now, 64)
if ARGV[6] == '1' then
  local prior = redis.call('HMGET', KEYS[5], 'fp', 'rid')
  if prior[1] then return {'IDEM', prior[1], prior[2]} end
end
local n = tonumber(ARGV[9])
local out = {'OK'}
local refused = false
local fresh = {}
local specs = {}
for i = 1, n do
  local ck = KEYS[5 + i]
  local need_s, blocking, limit, metric, bucket_ms, nb, expire_at, lid = string.match(
    ARGV[10 + i], '^(%d+) ([01]) (%d+) (%d) (%d+) (%d+) (%d+) (%S+)$')
  local need = tonumber(need_s)
  limit, bucket_ms, nb = tonumber(limit), tonumber(bucket_ms), tonumber(nb)
  specs[i] = {need_s, need, tonumber(metric), bucket_ms, nb, tonumber(expire_at), lid}
  local used, reserved, alerted, exists = read_counter(ck, bucket_ms, nb, now)
  fresh[i] = not exists
  local retry = 0
  if used + reserved + need > limit then
    if blocking == '1' then refused = true end
    if bucket_ms > 0 then
      retry = rolling_wait(ck, bucket_ms, nb, now, used + reserved + need - limit)
    end
  end
  out[#out + 1] = used
  out[#out + 1] = reserved
  out[#out + 1] = alerted
  out[#out + 1] = retry
end
if refused then out[1] = 'REFUSED' return out end
if ARGV[4] == '1' then return out end
local held = {}
for i = 1, n do
  local ck = KEYS[5 + i]
  local sp = specs[i]
  local need = sp[2]
  if need ~= 0 then redis.call('HINCRBY', ck, 'reserved', need) end
  if fresh[i] then
    redis.call('HSETNX', ck, 'reserved', 0)
    if sp[6] > 0 then redis.call('EXPIREAT', ck, sp[6]) end
  end
  -- The amount stays a string: cjson would round numbers beyond 14 digits.
  held[i] = {ck, sp[1], sp[3], sp[4], sp[5], sp[7]}
  out[2 + (i - 1) * 4 + 1] = out[2 + (i - 1) * 4 + 1] + need
end
local exp = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[4], 'state', 'held', 'exp', exp, 'at', now, 'd', cjson.encode(held))
redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[2]) + 3600000)
redis.call('ZADD', KEYS[3], exp, ARGV[3])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[5], 'fp', ARGV[7], 'rid', ARGV[3])
  redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[2]))
end
return out
