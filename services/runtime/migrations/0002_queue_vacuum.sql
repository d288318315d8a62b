-- The outbox is a queue: every row is inserted, then marked published within milliseconds, so
-- its partial index of unpublished rows fills with dead entries that the relay's every read
-- must step over until vacuum clears them. Autovacuum's default (a fifth of the table changed)
-- waits far too long for a table like this; vacuum it after every few thousand changes instead.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
                        autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000);
