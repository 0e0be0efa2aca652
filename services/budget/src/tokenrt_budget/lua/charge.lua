-- Charge usage without a reservation (a commit that arrived after the reservation
-- expired, with its chain): adds to used, checks nothing, and leaves a tombstone under the
-- reservation's key (as settle.lua does), so a retried late commit, whose first answer was
-- lost, charges nothing again (inside or outside a catch-up window).
-- KEYS: 1 ready marker, 2 catch-up hash, 3 counted set (see note_commit), 4 the
--       reservation's key (its tombstone), 4+i counter of limit i.
-- ARGV: 1 now ms, 2 n, 3 reservation id, 4 tombstone ttl s, then 5 per limit: amount,
--       bucket ms, buckets, counter ttl s, limit id.
-- Returns {EMPTY}, {SETTLED, state} (charged or settled already: nothing done), or
-- {DONE, n, per counter: limit id, used, reserved, alerted}.
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'EMPTY'} end
local prior = redis.call('HGET', KEYS[4], 'state')
if prior then return {'SETTLED', prior} end
local n = tonumber(ARGV[2])
local out = {'DONE', n}
local charge = note_commit(KEYS[2], KEYS[3], ARGV[3])
for i = 1, n do
  local b = 4 + (i - 1) * 5
  local ck = KEYS[4 + i]
  local bucket_ms, nb = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local used, reserved, alerted, exists = read_counter(ck, bucket_ms, nb, now)
  if charge then used = used + add_used(ck, tonumber(ARGV[b + 1]), bucket_ms, nb, now, now) end
  if not exists then
    redis.call('HSETNX', ck, 'reserved', 0)
    local ttl = tonumber(ARGV[b + 4])
    if ttl > 0 then redis.call('EXPIRE', ck, ttl) end
  end
  out[#out + 1] = ARGV[b + 5]
  out[#out + 1] = used
  out[#out + 1] = reserved
  out[#out + 1] = alerted
end
redis.call('HSET', KEYS[4], 'state', 'committed')
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[4]))
return out
