-- Rows Kafka refuses for good (too large, topic unknown or not writable, record invalid) are
-- parked instead of being retried forever: the relay skips them, and the later rows of the same
-- aggregate wait behind them, so one package's events stay in order (docs/decisions/0031).
-- An operator retries a parked row once the cause is fixed, or discards it
-- (`homecare outbox parked|retry|discard`).
ALTER TABLE outbox
    ADD COLUMN parked_at    timestamptz,
    ADD COLUMN park_error   text,
    ADD COLUMN discarded_at timestamptz,
    ADD COLUMN discarded_by text;
-- The relay asks, for each row it reads, whether a parked row of its aggregate comes first:
-- answered from this index of the (few) rows parked now.
CREATE INDEX outbox_parked ON outbox (aggregatetype, aggregateid, seq)
    WHERE parked_at IS NOT NULL AND published_at IS NULL AND discarded_at IS NULL;
