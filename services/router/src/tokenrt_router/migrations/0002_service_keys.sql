-- Service keys (issue 7): a key that may act for any tenant, naming it per request (the
-- compressor's summary calls are charged to the tenant whose conversation they summarise).
ALTER TABLE api_keys ADD COLUMN service boolean NOT NULL DEFAULT false;
