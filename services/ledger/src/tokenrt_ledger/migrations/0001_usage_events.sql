-- The usage ledger: raw events (partitioned by month of occurred_at), a global
-- event-id index that makes ingestion idempotent, and minute / hour / day rollups.
-- Runs with search_path set to the ledger's schema (setting TOKENRT_LEDGER_SCHEMA).

-- One row per event ever stored: the unique event id across all partitions.
CREATE TABLE event_ids (
    event_id    text PRIMARY KEY,
    occurred_at timestamptz NOT NULL
);

CREATE TABLE usage_events (
    event_id                    text        NOT NULL,
    occurred_at                 timestamptz NOT NULL,
    recorded_at                 timestamptz NOT NULL,
    org_id                      text        NOT NULL,
    project_id                  text        NOT NULL,
    user_id                     text        NOT NULL,
    session_id                  text        NOT NULL,
    api_key_id                  text        NOT NULL,
    provider                    smallint    NOT NULL,
    model                       text        NOT NULL,
    status                      smallint    NOT NULL,
    input_tokens                bigint      NOT NULL,
    cached_input_tokens         bigint      NOT NULL,
    cache_write_input_tokens    bigint      NOT NULL,
    output_tokens               bigint      NOT NULL,
    reasoning_tokens            bigint      NOT NULL,
    cost_nusd                   bigint      NOT NULL,
    cache_hit                   boolean     NOT NULL,
    cache_saved_tokens          bigint      NOT NULL,
    cache_saved_cost_nusd       bigint      NOT NULL,
    compression_applied         boolean     NOT NULL,
    compression_saved_tokens    bigint      NOT NULL,
    compression_saved_cost_nusd bigint      NOT NULL,
    latency_ms                  bigint      NOT NULL,
    time_to_first_token_ms      bigint      NOT NULL,
    stream                      boolean     NOT NULL,
    degraded                    boolean     NOT NULL,
    budget_reservation_id       text        NOT NULL,
    budget_reserved_at          timestamptz,
    -- The UsageEvent protobuf exactly as published (GetEvent / export answer from it).
    payload                     bytea       NOT NULL
) PARTITION BY RANGE (occurred_at);

CREATE INDEX usage_events_time ON usage_events (occurred_at);
CREATE INDEX usage_events_tenant ON usage_events (org_id, project_id, occurred_at);
CREATE INDEX usage_events_reserved ON usage_events (org_id, budget_reserved_at)
    WHERE budget_reservation_id <> '';

-- Rollups: one row per bucket and (org, project, user, session, model, provider),
-- updated in the ingest transaction for newly inserted events only.
DO $$
DECLARE
    grain text;
BEGIN
    FOREACH grain IN ARRAY ARRAY['minute', 'hour', 'day'] LOOP
        EXECUTE format($f$
            CREATE TABLE %I (
                bucket_start                timestamptz NOT NULL,
                org_id                      text        NOT NULL,
                project_id                  text        NOT NULL,
                user_id                     text        NOT NULL,
                session_id                  text        NOT NULL,
                model                       text        NOT NULL,
                provider                    smallint    NOT NULL,
                requests                    bigint      NOT NULL,
                ok_requests                 bigint      NOT NULL,
                cache_hit_requests          bigint      NOT NULL,
                denied_requests             bigint      NOT NULL,
                throttled_requests          bigint      NOT NULL,
                cancelled_requests          bigint      NOT NULL,
                error_requests              bigint      NOT NULL,
                degraded_requests           bigint      NOT NULL,
                input_tokens                bigint      NOT NULL,
                cached_input_tokens         bigint      NOT NULL,
                cache_write_input_tokens    bigint      NOT NULL,
                output_tokens               bigint      NOT NULL,
                reasoning_tokens            bigint      NOT NULL,
                cost_nusd                   bigint      NOT NULL,
                cache_saved_tokens          bigint      NOT NULL,
                cache_saved_cost_nusd       bigint      NOT NULL,
                compressed_requests         bigint      NOT NULL,
                compression_saved_tokens    bigint      NOT NULL,
                compression_saved_cost_nusd bigint      NOT NULL,
                latency_ms_sum              bigint      NOT NULL,
                answered_latency_ms_sum     bigint      NOT NULL,
                streamed_requests           bigint      NOT NULL,
                ttft_ms_sum                 bigint      NOT NULL,
                PRIMARY KEY (bucket_start, org_id, project_id, user_id, session_id, model,
                             provider)
            )$f$, 'rollup_' || grain);
        EXECUTE format('CREATE INDEX %I ON %I (org_id, project_id, bucket_start)',
                       'rollup_' || grain || '_tenant', 'rollup_' || grain);
    END LOOP;
END
$$;
