-- Current state of counters, after giving back expired holds.
-- KEYS: 1 expiry index, 1+i counter i. ARGV: 1 now ms, 2 reservation key prefix,
-- then 2 per counter: bucket ms, buckets.
-- Returns per counter: used, reserved, alerted.
local now = tonumber(ARGV[1])
sweep(KEYS[1], ARGV[2], now, 1000)
local out = {}
for i = 2, #KEYS do
  local b = 2 + (i - 2) * 2
  local used, reserved, alerted = read_counter(KEYS[i], tonumber(ARGV[b + 1]),
                                               tonumber(ARGV[b + 2]), now)
  out[#out + 1] = used
  out[#out + 1] = reserved
  out[#out + 1] = alerted
end
return out
