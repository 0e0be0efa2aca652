-- API keys (issue 9). The secret itself is never stored: only its SHA-256 (the keys are
-- 256-bit random values, so a fast hash is enough) and its first characters for humans.
CREATE TABLE api_keys (
    api_key_id   text PRIMARY KEY,
    key_sha256   text NOT NULL UNIQUE,
    key_prefix   text NOT NULL,
    name         text NOT NULL DEFAULT '',
    org_id       text NOT NULL,
    project_id   text NOT NULL,
    user_id      text NOT NULL DEFAULT '',
    admin        boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);

CREATE INDEX api_keys_tenant ON api_keys (org_id, project_id, api_key_id);
