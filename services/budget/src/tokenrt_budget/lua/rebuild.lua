-- Install a rebuild of an organization's counters from the ledger, all at once: every
-- counter's usage and catch-up bases, a new epoch in the ready marker, and the catch-up
-- window (or none). Holds outstanding in the counters are kept.
-- KEYS: 1 ready marker, 2 catch-up hash, 3 counted set, 4 limits version, 4+i counter i.
-- ARGV: 1 force (0/1: without it, a marker already there means another replica rebuilt),
--       2 new epoch, 3 rebuild time ms, 4 catch-up horizon start ms, 5 window end ms
--       (0 = no window), 6 n counters, 7 the limits version the sums were planned with
--       ('' = not checked), then per counter: ttl s, n fields, field/value pairs.
-- Returns 1, 0 when not installed (another replica rebuilt), or -1 when the limits
-- version moved since (a Reset or a limit change while the ledger was summing: the sums
-- may undo the Reset or belong to other counters; plan and sum again).
if ARGV[1] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[7] ~= '' and (redis.call('GET', KEYS[4]) or '0') ~= ARGV[7] then return -1 end
local j = 8
for i = 1, tonumber(ARGV[6]) do
  local ttl, nf = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
  replace_used(KEYS[4 + i], false, ARGV, j + 2, nf, ttl)
  j = j + 2 + 2 * nf
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2], KEYS[3])
local until_ms = tonumber(ARGV[5])
if until_ms > 0 then
  redis.call('HSET', KEYS[2], 'epoch', ARGV[2], 'since', ARGV[3], 'from', ARGV[4],
             'until', ARGV[5], 'ver', 0)
  redis.call('PEXPIREAT', KEYS[2], until_ms)
end
return 1
