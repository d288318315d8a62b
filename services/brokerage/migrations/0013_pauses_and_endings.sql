-- Pauses and endings (decision 0078): a running package may be paused (hospital, respite) while
-- its provider keeps it, resumed, or ended for good with a reason code and an effective date.
ALTER TABLE packages DROP CONSTRAINT packages_status_check;
ALTER TABLE packages ADD CONSTRAINT packages_status_check
    CHECK (status IN ('requested', 'offered', 'placed', 'unplaced', 'started', 'cancelled', 'awaiting_approval',
                      'paused', 'ended'));
ALTER TABLE packages DROP CONSTRAINT packages_provider_when_placed;
ALTER TABLE packages ADD CONSTRAINT packages_provider_when_placed
    CHECK (status NOT IN ('placed', 'started', 'paused', 'ended') OR provider_id IS NOT NULL);
ALTER TABLE packages ADD COLUMN paused_on date;
ALTER TABLE packages ADD COLUMN pause_reason text;
ALTER TABLE packages ADD COLUMN hold_expires_at timestamptz;  -- the hold timer's deadline while paused
ALTER TABLE packages ADD COLUMN ended_on date;                -- the effective date: the first day without care
ALTER TABLE packages ADD COLUMN end_reason text;
ALTER TABLE packages ADD COLUMN end_reason_text text;         -- the broker's words: kept here, never on an event
ALTER TABLE packages ADD COLUMN ended_at timestamptz;
CREATE INDEX packages_hold ON packages (hold_expires_at) WHERE status = 'paused';
