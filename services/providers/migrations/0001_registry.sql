-- Providers: the framework's registry, the offers each provider received, and its placements.

CREATE TABLE providers (
    provider_id     text PRIMARY KEY,
    revision        integer NOT NULL DEFAULT 1,       -- bumped on every change; ProviderUpdated carries it
    profile         jsonb NOT NULL,                   -- ProviderProfile without committed_hours
    adapter         jsonb NOT NULL,                   -- the adapter's kind and settings
    weekly_capacity_hours numeric(7,2) NOT NULL CHECK (weekly_capacity_hours >= 0),
    committed_hours numeric(7,2) NOT NULL DEFAULT 0 CHECK (committed_hours >= 0),
    held_hours      numeric(7,2) NOT NULL DEFAULT 0 CHECK (held_hours >= 0),
    -- Never over-committed, whatever the interleaving of bids and awards.
    CHECK (committed_hours + held_hours <= weekly_capacity_hours),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE offers (
    package_id       uuid NOT NULL,
    offer_round      integer NOT NULL,
    provider_id      text NOT NULL REFERENCES providers (provider_id),
    tier             text NOT NULL,
    spec             jsonb NOT NULL,
    band_rate        numeric(8,2) NOT NULL,
    window_closes_at timestamptz NOT NULL,
    status           text NOT NULL CHECK (status IN ('offered', 'bid', 'declined', 'won', 'lost', 'closed')),
    hourly_rate      numeric(8,2),
    held_hours       numeric(7,2) NOT NULL DEFAULT 0,  -- capacity held while a bid is outstanding
    decline_reason   text,
    decline_text     text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    answered_at      timestamptz,
    PRIMARY KEY (package_id, offer_round, provider_id)
);
CREATE INDEX offers_provider ON offers (provider_id, status);
CREATE INDEX offers_package ON offers (package_id);

CREATE TABLE placements (
    package_id     uuid PRIMARY KEY,
    provider_id    text NOT NULL REFERENCES providers (provider_id),
    hours_per_week numeric(5,2) NOT NULL,
    hourly_rate    numeric(8,2) NOT NULL,
    start_date     date NOT NULL,
    placed_at      timestamptz NOT NULL
);
