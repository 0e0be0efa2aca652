-- Ingest speed. Rollup rows are updated in place many times: leave room on each page so
-- that those updates are HOT (no index writes). The minute rollup is only read for the
-- partial hours at the edges of a range, where its primary key (bucket_start first) is
-- selective enough, so its tenant index is not worth its cost on every insert.
ALTER TABLE rollup_minute SET (fillfactor = 70);
ALTER TABLE rollup_hour SET (fillfactor = 70);
ALTER TABLE rollup_day SET (fillfactor = 70);
DROP INDEX rollup_minute_tenant;
