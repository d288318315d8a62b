-- Deliveries are a queue for the dispatcher (pending -> sent within a second): vacuumed often,
-- like the outbox (runtime migration 0002), so its partial index of due rows stays small.
ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
                            autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000);
