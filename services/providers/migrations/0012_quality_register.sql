-- The provider quality and risk register (decision 0103, docs/guide/quality-register.md): owned by
-- the providers service, maintained by the contracts and quality team. The current CQC rating and
-- local risk stay in providers.profile too (the ProviderProfile the brokerage ranks with); the
-- register holds what they came from and everything else. Free text (a reviewer's note, a
-- complaint's summary) lives only here, never on an event.

CREATE TABLE quality_register (
    provider_id            text PRIMARY KEY REFERENCES providers (provider_id),
    cqc_location_id        text UNIQUE CHECK (cqc_location_id ~ '^1-[0-9]{1,12}$'),
    cqc_inspected_on       date,          -- the CQC's publication date of the current rating
    cqc_source             text CHECK (cqc_source IN ('seed', 'manual', 'cqc_import')),
    local_risk_reviewed_by text,          -- the reviewer's verified identity (the token's user)
    local_risk_reviewed_at timestamptz,
    local_risk_reason      text,          -- a RiskReason code
    updated_at             timestamptz NOT NULL DEFAULT now()
);
INSERT INTO quality_register (provider_id, cqc_source) SELECT provider_id, 'seed' FROM providers;

-- Every change to the register, as recorded (the event's codes and the words that stay here).
CREATE TABLE quality_changes (
    id            bigserial PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    provider_id   text NOT NULL REFERENCES providers (provider_id),
    change        text NOT NULL,
    detail        jsonb NOT NULL,          -- the change's codes, dates and previous values
    note          text,                    -- the recorder's own words, if any
    recorded_by   text NOT NULL,
    recorded_at   timestamptz NOT NULL,
    import_id     uuid                     -- the CQC import that made it, if any
);
CREATE INDEX quality_changes_provider ON quality_changes (provider_id, recorded_at DESC);

CREATE TABLE complaints (
    complaint_id  uuid PRIMARY KEY,
    provider_id   text NOT NULL REFERENCES providers (provider_id),
    theme         text NOT NULL,           -- a ComplaintTheme code
    package_id    uuid,
    summary       text NOT NULL DEFAULT '',
    received_on   date NOT NULL,
    recorded_by   text NOT NULL,
    closed_on     date,
    outcome       text,                    -- upheld, partly_upheld, not_upheld
    closed_by     text
);
CREATE INDEX complaints_provider ON complaints (provider_id, received_on DESC);

CREATE TABLE improvement_plans (
    plan_id       uuid PRIMARY KEY,
    provider_id   text NOT NULL REFERENCES providers (provider_id),
    area          text NOT NULL,           -- a RiskReason code: what the plan is to improve
    actions       text NOT NULL DEFAULT '',
    due_on        date NOT NULL,
    opened_by     text NOT NULL,
    opened_at     timestamptz NOT NULL,
    closed_on     date,
    met           boolean,
    closed_by     text
);
CREATE INDEX improvement_plans_provider ON improvement_plans (provider_id, due_on);

-- The hand-back and late-start record: one row per package handed back or started late.
CREATE TABLE delivery_incidents (
    provider_id   text NOT NULL REFERENCES providers (provider_id),
    package_id    uuid NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('hand_back', 'late_start')),
    on_date       date NOT NULL,           -- UK date it happened
    days_late     integer,                 -- late_start: days after the agreed start date
    PRIMARY KEY (provider_id, package_id, kind, on_date)
);

-- What each CQC import did: the file's counts and its report (rows changed, unmatched, refused).
CREATE TABLE cqc_imports (
    import_id     uuid PRIMARY KEY,
    imported_by   text NOT NULL,
    imported_at   timestamptz NOT NULL,
    file_name     text NOT NULL DEFAULT '',
    rows          integer NOT NULL,
    applied       boolean NOT NULL,
    report        jsonb NOT NULL
);
