-- A request's Idempotency-Key: a client that lost the response (timeout, crash, restart) may
-- send the same request again and get the same package back instead of a second package.
ALTER TABLE packages ADD COLUMN idempotency_key text UNIQUE;
ALTER TABLE packages ADD COLUMN request_hash text;
