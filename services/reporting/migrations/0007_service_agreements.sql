-- Service agreement records (ServiceAgreementRecorded on brokerage.service-agreements; decision records
-- 0109-0111, 0118): what the council agreed to pay, projected so the commissioners' reports and the
-- KPIs can read agreed spend. Append-only like the brokerage's own table: a correction is a new row
-- (the next version, naming the row it replaces in supersedes); no row is ever updated. The row in
-- force is the one no other row supersedes (the view service_agreement_records says which).
-- No foreign keys: the projection keeps whatever the topic still holds, in any order a rebuild reads it.
CREATE TABLE service_agreements (
    record_id        uuid PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE,
    agreement_id     uuid NOT NULL,
    version          integer NOT NULL,
    supersedes       uuid,
    reason           text NOT NULL,
    status           text NOT NULL,            -- agreed, cancelled
    package_id       uuid NOT NULL,
    provider_id      text NOT NULL,
    zone             text NOT NULL,
    band             text NOT NULL,
    hourly_rate      numeric NOT NULL,         -- pounds per hour
    band_rate        numeric NOT NULL,         -- pounds per hour
    hours_per_week   numeric NOT NULL,         -- carer hours per week
    weekly_cost      numeric NOT NULL,         -- pounds per week
    start_date       date NOT NULL,            -- UK dates, inclusive
    end_date         date,
    funding_revision integer NOT NULL,
    cost_centre      text NOT NULL,
    rate_card        text NOT NULL,
    recorded_at      timestamptz NOT NULL
);
CREATE INDEX service_agreements_supersedes ON service_agreements (supersedes) WHERE supersedes IS NOT NULL;
CREATE INDEX service_agreements_dates ON service_agreements (start_date, end_date) WHERE status = 'agreed';

-- One row per payer line of each funding part of each record (a part's lines add up to the weekly cost).
CREATE TABLE service_agreement_lines (
    record_id        uuid NOT NULL,
    part             integer NOT NULL,         -- 0, 1, ... in the record's order
    line             integer NOT NULL,         -- 0, 1, ... within the part
    funding_from     date NOT NULL,            -- the part's first day (UK date)
    funding_to       date,                     -- its last day; NULL: while the agreement lasts
    funder           text NOT NULL,            -- the funding record's funder of the part
    payer            text NOT NULL,            -- who pays this line (the finance file's Funder)
    basis            text NOT NULL,            -- share, above_band
    percent          numeric,                  -- share: the funder's per cent at the band rate
    pounds_per_week  numeric NOT NULL,
    PRIMARY KEY (record_id, part, line)
);

-- Every record with whether it is in force (what the export of service_agreements gives).
CREATE VIEW service_agreement_records AS
SELECT s.*, NOT EXISTS (SELECT 1 FROM service_agreements later WHERE later.supersedes = s.record_id) AS in_force
  FROM service_agreements s;
