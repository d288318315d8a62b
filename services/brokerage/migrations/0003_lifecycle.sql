-- The rest of a package's life: started, cancelled, and the unplaced queue's re-offers.
ALTER TABLE packages DROP CONSTRAINT packages_status_check;
ALTER TABLE packages ADD CONSTRAINT packages_status_check
    CHECK (status IN ('requested', 'offered', 'placed', 'unplaced', 'started', 'cancelled'));
ALTER TABLE packages DROP CONSTRAINT packages_check;
ALTER TABLE packages ADD CONSTRAINT packages_provider_when_placed
    CHECK (status NOT IN ('placed', 'started') OR provider_id IS NOT NULL);
ALTER TABLE packages ADD COLUMN cycle integer NOT NULL DEFAULT 1;        -- a re-offer starts a new cycle of tiers
ALTER TABLE packages ADD COLUMN next_reoffer_at timestamptz;              -- the unplaced queue's schedule
ALTER TABLE packages ADD COLUMN started_on date;
ALTER TABLE packages ADD COLUMN cancelled_at timestamptz;
ALTER TABLE packages ADD COLUMN cancel_reason text;
ALTER TABLE offer_rounds ADD COLUMN cycle integer NOT NULL DEFAULT 1;
CREATE INDEX packages_reoffer ON packages (next_reoffer_at) WHERE status = 'unplaced';
