-- Reset a counter: replace its committed usage, keep outstanding holds.
-- KEYS: 1 counter. ARGV: 1 "1" to restart the alert level, then field/value pairs
-- ("used", and for rolling windows "lo" and buckets "b<index>"), last the counter ttl s
-- (0 = none).
replace_used(KEYS[1], ARGV[1] == '1', ARGV, 2, (#ARGV - 2) / 2, tonumber(ARGV[#ARGV]))
return 1
