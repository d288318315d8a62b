-- Service agreement records: the hand-off to finance (decision records 0109-0111). Append-only: a
-- correction is a new row of the same agreement with the next version naming the row it replaces
-- (supersedes); no row is ever updated. The row in force is the one no other row supersedes. Each
-- row is written in the transaction of the package's change that caused it, with its
-- ServiceAgreementRecorded event in the outbox (topic brokerage.service-agreements).
CREATE TABLE service_agreements (
    record_id        uuid PRIMARY KEY,
    agreement_id     uuid NOT NULL,
    version          integer NOT NULL CHECK (version >= 1),
    -- UNIQUE: a record is superseded at most once, so each agreement's versions are one chain.
    supersedes       uuid UNIQUE REFERENCES service_agreements (record_id),
    reason           text NOT NULL,
    status           text NOT NULL CHECK (status IN ('agreed', 'cancelled')),
    package_id       uuid NOT NULL REFERENCES packages (package_id),
    provider_id      text NOT NULL,
    zone             text NOT NULL,
    band             text NOT NULL,
    hourly_rate      numeric(8, 2) NOT NULL,   -- pounds per hour
    band_rate        numeric(8, 2) NOT NULL,   -- pounds per hour
    hours_per_week   numeric(5, 2) NOT NULL,   -- carer hours per week
    weekly_cost      numeric(8, 2) NOT NULL,   -- pounds per week
    start_date       date NOT NULL,            -- UK dates, inclusive
    end_date         date,
    funding          jsonb NOT NULL,           -- [{effective_from, effective_to, funder, lines: [...]}]
    funding_revision integer NOT NULL,
    cost_centre      text NOT NULL,
    rate_card        text NOT NULL,
    event_id         uuid NOT NULL,            -- the ServiceAgreementRecorded event that carried it
    recorded_at      timestamptz NOT NULL,
    UNIQUE (agreement_id, version),
    CHECK ((version = 1) = (supersedes IS NULL))
);
CREATE INDEX service_agreements_package ON service_agreements (package_id);
CREATE INDEX service_agreements_recorded ON service_agreements (recorded_at);
