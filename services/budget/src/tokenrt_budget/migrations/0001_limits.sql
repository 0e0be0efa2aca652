-- Budget limits: the source of truth (counters live in Redis).
CREATE TABLE limits (
    limit_id text PRIMARY KEY,
    org_id text NOT NULL,
    scope_kind integer NOT NULL,
    project_id text NOT NULL DEFAULT '',
    user_id text NOT NULL DEFAULT '',
    session_id text NOT NULL DEFAULT '',
    api_key_id text NOT NULL DEFAULT '',
    metric integer NOT NULL,
    period integer NOT NULL,
    rolling_window_seconds bigint NOT NULL DEFAULT 0,
    time_zone text NOT NULL DEFAULT '',
    limit_value bigint NOT NULL CHECK (limit_value > 0),
    warning_bp integer NOT NULL,
    critical_bp integer NOT NULL,
    action integer NOT NULL,
    fail_mode integer NOT NULL DEFAULT 0,
    name text NOT NULL DEFAULT '',
    -- Usage before this instant is not counted (set by Reset, used by rebuilds).
    reset_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX limits_org ON limits (org_id);
