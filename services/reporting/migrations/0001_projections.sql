-- Reporting projections: what the event topics say happened, kept as long as the council keeps
-- its records (independent of Kafka's retention). No personal data: events carry none.
-- Every table of one-row-per-event is keyed by the event id, so an event applied twice (a
-- rebuild over what the inbox already holds) adds nothing. docs/guide/reporting-data-dictionary.md
-- describes every column. Amounts are unconstrained numeric: they keep the scale the event gave
-- (as Python's Decimal does), so sums read the same as the events' own arithmetic.

-- One row per package: its request and its milestones. A row may be created by an event that
-- arrives before the request (answers and confirmations travel on other topics); the request's
-- columns stay NULL until PackageRequested is applied.
CREATE TABLE packages (
    package_id            uuid PRIMARY KEY,
    zone                  text,
    band                  text,
    urgency               text,
    hours_per_week        numeric,
    funding               text,
    start_date            date,
    requested_at          timestamptz,
    requested_on          date,            -- UK business date of requested_at
    first_offered_at      timestamptz,
    offer_rounds          integer NOT NULL DEFAULT 0,
    band_rate             numeric,         -- the band's rate of the latest offer, pounds per hour
    last_offered_at       timestamptz,
    placed_at             timestamptz,     -- the latest placement
    placements            integer NOT NULL DEFAULT 0,
    provider_id           text,            -- of the latest placement
    hourly_rate           numeric,   -- of the latest placement, pounds per hour
    placed_hours          numeric,   -- of the latest placement, carer hours per week
    placed_zone           text,
    placed_band           text,
    started_on            date,
    handed_back_at        timestamptz,
    hand_backs            integer NOT NULL DEFAULT 0,
    cancelled_at          timestamptz,
    cancel_reason         text,
    unplaced_at           timestamptz,
    unplaced_reason       text,
    -- The latest lifecycle event (its type and when it happened): the package's state now.
    status                text,
    status_at             timestamptz
);
CREATE INDEX packages_requested_at ON packages (requested_at);
CREATE INDEX packages_zone_band ON packages (zone, band, requested_at);
CREATE INDEX packages_status ON packages (status) WHERE status IN ('PackageUnplaced', 'ExceptionRequested');

CREATE TABLE offers (
    event_id          uuid PRIMARY KEY,
    package_id        uuid NOT NULL,
    offer_round       integer NOT NULL,
    tier              text NOT NULL,
    provider_ids      text[] NOT NULL,
    band_rate         numeric NOT NULL,
    offered_at        timestamptz NOT NULL,
    window_closes_at  timestamptz NOT NULL
);
CREATE INDEX offers_package ON offers (package_id, offered_at);

-- Providers' answers: a bid (with its rate) or a decline (with its reason code).
CREATE TABLE answers (
    event_id      uuid PRIMARY KEY,
    package_id    uuid NOT NULL,
    offer_round   integer NOT NULL,
    provider_id   text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('bid', 'decline')),
    hourly_rate   numeric,
    reason        text,
    adapter       text NOT NULL,
    answered_at   timestamptz NOT NULL
);
CREATE INDEX answers_package ON answers (package_id);

CREATE TABLE placements (
    event_id        uuid PRIMARY KEY,
    package_id      uuid NOT NULL,
    provider_id     text NOT NULL,
    offer_round     integer NOT NULL,
    tier            text NOT NULL,
    hourly_rate     numeric NOT NULL,
    hours_per_week  numeric NOT NULL,
    zone            text NOT NULL,
    band            text NOT NULL,
    urgency         text NOT NULL,
    rate_card       text NOT NULL,
    start_date      date NOT NULL,
    placed_at       timestamptz NOT NULL
);
CREATE INDEX placements_package ON placements (package_id, placed_at);

-- Lifecycle events beyond the request and the placement: unplaced, cancelled, started, handed
-- back, reopened, above-rate exceptions asked for and decided.
CREATE TABLE milestones (
    event_id        uuid PRIMARY KEY,
    package_id      uuid NOT NULL,
    event_type      text NOT NULL,
    provider_id     text,
    reason          text,            -- the event's reason code
    decision        text,            -- an exception's: approved or rejected
    hourly_rate     numeric,   -- an exception's rate asked for
    band_rate       numeric,
    hours_per_week  numeric,
    on_date         date,            -- started_on, notice_ends_on
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX milestones_package ON milestones (package_id, event_type);
CREATE INDEX milestones_type_time ON milestones (event_type, occurred_at);

-- Notifications' outcomes: a placement's confirmations, a message that could not be delivered.
CREATE TABLE notification_outcomes (
    event_id        uuid PRIMARY KEY,
    package_id      uuid NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('confirmed', 'failed')),
    provider_id     text,
    message         text,
    recipient_kind  text,
    channel         text,
    reason          text,
    recipients      integer,
    attempts        integer,
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX notification_outcomes_package ON notification_outcomes (package_id);

-- The providers as the registry last described them (name, tier, status), for reports by provider.
CREATE TABLE providers (
    provider_id  text PRIMARY KEY,
    name         text NOT NULL,
    tier         text NOT NULL,
    status       text NOT NULL,
    revision     integer NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- Every dead letter seen on homecare.dead-letters (its origin and reason), counted, not replayed.
CREATE TABLE dead_letters (
    origin_topic      text NOT NULL,
    origin_partition  integer NOT NULL,
    origin_offset     bigint NOT NULL,
    consumer_group    text NOT NULL,
    reason            text NOT NULL,
    event_type        text,
    recorded_at       timestamptz NOT NULL,
    PRIMARY KEY (origin_topic, origin_partition, origin_offset, consumer_group)
);
