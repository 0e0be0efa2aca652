-- Hour and day rollups without the session dimension: one row per bucket and (org,
-- project, user, model, provider). Every query that neither groups nor filters by session
-- reads these (a month of a busy project is a few thousand rows instead of one per
-- session); the ingest transaction keeps them in step with the full rollups. Existing
-- full rollups are summed into them, so history carries over.
DO $$
DECLARE
    grain text;
BEGIN
    FOREACH grain IN ARRAY ARRAY['hour', 'day'] LOOP
        EXECUTE format(
            'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS) WITH (fillfactor = 70)',
            'rollup_' || grain || '_user', 'rollup_' || grain);
        EXECUTE format('ALTER TABLE %I DROP COLUMN session_id', 'rollup_' || grain || '_user');
        EXECUTE format(
            'ALTER TABLE %I ADD PRIMARY KEY (bucket_start, org_id, project_id, user_id, model, '
            'provider)', 'rollup_' || grain || '_user');
        EXECUTE format('CREATE INDEX %I ON %I (org_id, project_id, bucket_start)',
                       'rollup_' || grain || '_user_tenant', 'rollup_' || grain || '_user');
        EXECUTE format($f$
            INSERT INTO %I SELECT bucket_start, org_id, project_id, user_id, model, provider,
                sum(requests), sum(ok_requests), sum(cache_hit_requests), sum(denied_requests),
                sum(throttled_requests), sum(cancelled_requests), sum(error_requests),
                sum(degraded_requests), sum(input_tokens), sum(cached_input_tokens),
                sum(cache_write_input_tokens), sum(output_tokens), sum(reasoning_tokens),
                sum(cost_nusd), sum(cache_saved_tokens), sum(cache_saved_cost_nusd),
                sum(compressed_requests), sum(compression_saved_tokens),
                sum(compression_saved_cost_nusd), sum(latency_ms_sum),
                sum(answered_latency_ms_sum), sum(streamed_requests), sum(ttft_ms_sum)
            FROM %I GROUP BY 1, 2, 3, 4, 5, 6$f$,
            'rollup_' || grain || '_user', 'rollup_' || grain);
    END LOOP;
END
$$;
