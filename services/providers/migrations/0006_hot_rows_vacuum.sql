-- Each provider's row is updated by every bid and award (held and committed hours): a few dozen
-- rows with thousands of versions an hour under load. Vacuumed after every thousand updates.
ALTER TABLE providers SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
