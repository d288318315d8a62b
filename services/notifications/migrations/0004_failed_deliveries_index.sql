-- Operations' overview counts and lists deliveries that failed for good (GET /deliveries/failed):
-- a partial index keeps that cheap however many messages were sent.
CREATE INDEX IF NOT EXISTS deliveries_failed ON deliveries (failed_at DESC) WHERE status = 'failed';
