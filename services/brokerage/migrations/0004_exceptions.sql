-- Bids above the band rate become acceptable only once a broker approves the exception
-- ("spending above normal rates", 002:1737): the package waits for that decision.
ALTER TABLE packages DROP CONSTRAINT packages_status_check;
ALTER TABLE packages ADD CONSTRAINT packages_status_check
    CHECK (status IN ('requested', 'offered', 'placed', 'unplaced', 'started', 'cancelled', 'awaiting_approval'));

CREATE TABLE exceptions (
    id            bigserial PRIMARY KEY,
    package_id    uuid NOT NULL REFERENCES packages (package_id),
    requested_at  timestamptz NOT NULL,
    provider_id   text NOT NULL,              -- the best-ranked bid above the rate
    hourly_rate   numeric(8,2) NOT NULL,
    band_rate     numeric(8,2) NOT NULL,
    decision      text CHECK (decision IN ('approved', 'rejected')),
    decided_by    text,
    decided_at    timestamptz,
    reason        text
);
CREATE UNIQUE INDEX exceptions_one_open ON exceptions (package_id) WHERE decision IS NULL;
