-- A provider suspended or leaving the framework: each of its active packages is marked here (in
-- the transaction that learns of it) and re-brokered by the timers one by one, most urgent first.
ALTER TABLE packages ADD COLUMN rebroker_due_at timestamptz;
ALTER TABLE packages ADD COLUMN rebroker_reason text;
CREATE INDEX packages_rebroker ON packages (rebroker_due_at) WHERE rebroker_due_at IS NOT NULL;
