-- Periodic sweeper: give back the holds of expired reservations of one organization.
-- KEYS: 1 expiry index. ARGV: 1 now ms, 2 reservation key prefix, 3 most to sweep.
return sweep(KEYS[1], ARGV[2], tonumber(ARGV[1]), tonumber(ARGV[3]))
