-- Brokerage: packages, the people they are for, offer rounds, answers, the provider view.

CREATE TABLE packages (
    package_id        uuid PRIMARY KEY,
    status            text NOT NULL CHECK (status IN ('requested', 'offered', 'placed', 'unplaced')),
    spec              jsonb NOT NULL,            -- the PackageSpec offered to providers (no personal data)
    zone              text NOT NULL,
    band              text NOT NULL,
    urgency           text NOT NULL,
    hours_per_week    numeric(5,2) NOT NULL,
    start_date        date NOT NULL,
    requested_by      text NOT NULL,
    policy            text NOT NULL,
    rate_card         text NOT NULL,
    band_rate         numeric(8,2) NOT NULL,
    current_round     integer NOT NULL DEFAULT 0,
    current_tier      text,
    window_closes_at  timestamptz,
    provider_id       text,
    hourly_rate       numeric(8,2),
    requested_at      timestamptz NOT NULL,
    placed_at         timestamptz,
    unplaced_at       timestamptz,
    CHECK ((status = 'placed') = (provider_id IS NOT NULL))
);
CREATE INDEX packages_status ON packages (status, zone, band, urgency);
-- The window timer: offered packages by deadline.
CREATE INDEX packages_window ON packages (window_closes_at) WHERE status = 'offered';

-- Personal details: only here, never on Kafka, disclosed only to the winning provider.
CREATE TABLE persons (
    package_id    uuid PRIMARY KEY REFERENCES packages (package_id),
    full_name     text NOT NULL,
    address       text NOT NULL,
    postcode      text NOT NULL,
    phone         text,
    email         text,
    nhs_number    text NOT NULL,
    date_of_birth date,
    care_notes    text
);

CREATE TABLE offer_rounds (
    package_id        uuid NOT NULL REFERENCES packages (package_id),
    offer_round       integer NOT NULL,
    tier              text NOT NULL,
    provider_ids      text[] NOT NULL,
    excluded          jsonb NOT NULL DEFAULT '{}',   -- provider id -> reasons
    quality           jsonb NOT NULL DEFAULT '{}',   -- provider id -> quality score at offer time
    opened_at         timestamptz NOT NULL,
    window_closes_at  timestamptz NOT NULL,
    closed_at         timestamptz,
    outcome           text,
    PRIMARY KEY (package_id, offer_round)
);

CREATE TABLE answers (
    package_id      uuid NOT NULL,
    offer_round     integer NOT NULL,
    provider_id     text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('bid', 'decline')),
    hourly_rate     numeric(8,2),
    earliest_start  date,
    reason          text,
    reason_text     text,
    adapter         text NOT NULL,
    answered_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    event_id        uuid NOT NULL,
    late            boolean NOT NULL DEFAULT false,
    PRIMARY KEY (package_id, offer_round, provider_id),
    FOREIGN KEY (package_id, offer_round) REFERENCES offer_rounds (package_id, offer_round)
);

-- Every stage of a package with its time: the evidence of how long people waited.
CREATE TABLE timeline (
    id          bigserial PRIMARY KEY,
    package_id  uuid NOT NULL REFERENCES packages (package_id),
    at          timestamptz NOT NULL DEFAULT now(),
    stage       text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX timeline_package ON timeline (package_id, id);

-- The brokerage's copy of the provider registry, fed by ProviderUpdated events.
CREATE TABLE provider_view (
    provider_id  text PRIMARY KEY,
    revision     integer NOT NULL,
    profile      jsonb NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
