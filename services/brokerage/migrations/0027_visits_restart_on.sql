-- The day a resumed package's visits restart (decision 0162): a resume may be recorded ahead, the
-- person still in hospital until then. A re-brokering before that day (its provider suspended or
-- gone) starts the new provider on it, and pays the old one's hold to its eve, not from today.
ALTER TABLE packages ADD COLUMN visits_restart_on date;
