-- Pauses and endings (decision 0078). A paused placement stays live - the provider keeps the
-- package and its committed hours through the hold - with the pause recorded on it. An ending
-- dated ahead is kept on the live placement (ends_on) and released on that UK date by a timer.
ALTER TABLE placements DROP CONSTRAINT placements_end_reason_check;
ALTER TABLE placements ADD CONSTRAINT placements_end_reason_check
    CHECK (end_reason IN ('cancelled', 'handed_back', 'reopened', 'replaced', 'ended'));
ALTER TABLE placements ADD COLUMN paused_on date;            -- the current pause's first day, NULL when running
ALTER TABLE placements ADD COLUMN pause_reason text;         -- a PauseReason code
ALTER TABLE placements ADD COLUMN hold_expires_at timestamptz;
ALTER TABLE placements ADD COLUMN paid_during_hold boolean;
ALTER TABLE placements ADD COLUMN pauses integer NOT NULL DEFAULT 0;
ALTER TABLE placements ADD COLUMN ends_on date;              -- a PackageEnded's effective date, until released
ALTER TABLE placements ADD COLUMN ending_reason text;        -- an EndReason code
CREATE INDEX placements_ending ON placements (ends_on) WHERE ended_at IS NULL AND ends_on IS NOT NULL;
