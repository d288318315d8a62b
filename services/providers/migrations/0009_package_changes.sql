-- Changes to a running package (decision 0082): the provider holding a package is offered a change
-- (more or fewer hours, another visit pattern, new needs); its automatic adapter answers at once,
-- a webhook or portal adapter through the provider API before the window closes. Accepted, the
-- live placement's hours become the new ones and the provider's committed hours move by the difference.
CREATE TABLE change_offers (
    change_id        uuid PRIMARY KEY,
    package_id       uuid NOT NULL,
    provider_id      text NOT NULL REFERENCES providers (provider_id),
    spec             jsonb NOT NULL,              -- the PackageSpec after the change (no personal data)
    previous_hours   numeric(5,2) NOT NULL,
    hours_per_week   numeric(5,2) NOT NULL,
    effective_date   date NOT NULL,
    window_closes_at timestamptz NOT NULL,
    offered_at       timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'offered'
                     CHECK (status IN ('offered', 'accepted', 'declined', 'applied', 'closed')),
    adapter          text,
    answered_at      timestamptz,
    decline_reason   text,                        -- a DeclineReason code
    decline_text     text                         -- the provider's own words: kept here, never on an event
);
CREATE INDEX change_offers_by_provider ON change_offers (provider_id, offered_at);

-- A change offered to a webhook adapter is POSTed like an offer (a ChangeNotice), from the same
-- deliveries table: keyed by its change instead of an offer round.
ALTER TABLE webhook_deliveries ALTER COLUMN offer_round DROP NOT NULL;
ALTER TABLE webhook_deliveries ADD COLUMN change_id uuid UNIQUE;
