-- Apply one catch-up pass: the ledger's sums, per counter field, of the events reserved
-- since the catch-up horizon that the counters do not count themselves (events of
-- reservations made since the rebuild and of those in the counted set left out).
-- Each field's base L<name> is what was added from the ledger so far; the difference is
-- added. The sums only grow while the counted set stays the same, so an older answer
-- (a slower replica's) never takes anything back; when the set grew since the base was
-- taken (Lv below the version) a sum may shrink by usage a commit charged meanwhile, and
-- the difference is then applied whatever its sign.
-- KEYS: 1 catch-up hash, 1+i counter i.
-- ARGV: 1 now ms, 2 counted-set version the sums were taken at, 3 n counters, 4 the
--       window's epoch, 5 shortest and 6 longest ms to the next pass, then per counter:
--       bucket ms, buckets, n fields, then field/value pairs (field "used", or a rolling
--       bucket's index).
-- The next pass is due after the shortest wait when this one added something, else
-- after twice the last wait, up to the longest (hash fields step and next).
-- Returns {RETRY} (the counted set changed, or another rebuild opened a new window: sum
-- again) or {DONE, amount added, when the next pass is due (ms)}.
local now = tonumber(ARGV[1])
local ver = tonumber(ARGV[2])
local head = redis.call('HMGET', KEYS[1], 'ver', 'epoch')
if tonumber(head[1] or '-1') ~= ver or head[2] ~= ARGV[4] then return {'RETRY'} end
local added = 0
local j = 7
for i = 1, tonumber(ARGV[3]) do
  local ck = KEYS[1 + i]
  local bucket_ms, nb, nf = tonumber(ARGV[j]), tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  j = j + 3
  if redis.call('EXISTS', ck) == 1 then
    read_counter(ck, bucket_ms, nb, now)  -- drops buckets that left the window
    local signed = tonumber(redis.call('HGET', ck, 'Lv') or '0') < ver
    local first = 0
    if bucket_ms > 0 then first = math.floor(now / bucket_ms) - nb + 1 end
    for _ = 1, nf do
      local name, value = ARGV[j], tonumber(ARGV[j + 1])
      j = j + 2
      local base = redis.call('HGET', ck, 'L' .. name)
      if base then
        local delta = value - tonumber(base)
        if bucket_ms > 0 and tonumber(name) < first then
          redis.call('HDEL', ck, 'L' .. name)
        elseif delta > 0 or (signed and delta < 0) then
          local at = now
          if bucket_ms > 0 then at = tonumber(name) * bucket_ms end
          add_used(ck, delta, bucket_ms, nb, at, now)
          redis.call('HSET', ck, 'L' .. name, value)
          added = added + delta
        end
      end
    end
    redis.call('HSET', ck, 'Lv', ver)
  else
    j = j + 2 * nf
  end
end
local step = tonumber(redis.call('HGET', KEYS[1], 'step') or '0') * 2
if added ~= 0 or step < tonumber(ARGV[5]) then step = tonumber(ARGV[5]) end
if step > tonumber(ARGV[6]) then step = tonumber(ARGV[6]) end
redis.call('HSET', KEYS[1], 'step', step, 'next', now + step)
return {'DONE', added, now + step}
