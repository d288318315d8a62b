-- A package request's Idempotency-Key is kept by the runtime's idempotency_keys (runtime migration
-- 0005, services/runtime/idempotency.py), scoped per caller and kept 7 days, as every service's
-- commands are (decision 0094). The brokerage's own columns go; a key sent before this upgrade and
-- retried after it is taken as new (the retry window of a lost response is seconds, not days).
ALTER TABLE packages DROP COLUMN idempotency_key;
ALTER TABLE packages DROP COLUMN request_hash;
