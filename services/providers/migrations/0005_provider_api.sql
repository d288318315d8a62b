-- Providers answering through their own adapters: API credentials, change requests, webhook
-- deliveries, and who answered an offer how.

-- A provider's API credentials. Only a SHA-256 of the secret is kept: the secret is 256 random
-- bits, so a fast hash is enough (no dictionary to guess from); the whole token is shown once.
CREATE TABLE credentials (
    credential_id  text PRIMARY KEY,
    provider_id    text NOT NULL REFERENCES providers (provider_id),
    secret_sha256  text NOT NULL,
    label          text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    last_used_at   timestamptz
);
CREATE INDEX credentials_provider ON credentials (provider_id);

-- A provider asks to serve other zones or bands; the brokerage team approves or rejects.
CREATE TABLE change_requests (
    request_id     bigserial PRIMARY KEY,
    provider_id    text NOT NULL REFERENCES providers (provider_id),
    zones          text[] NOT NULL,
    bands          text[] NOT NULL,
    reason         text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    requested_at   timestamptz NOT NULL DEFAULT now(),
    decided_at     timestamptz,
    decided_by     text,
    decision_reason text
);
-- One open request at a time per provider: a second one would race the first's approval.
CREATE UNIQUE INDEX change_requests_one_pending ON change_requests (provider_id) WHERE status = 'pending';

-- The signing secret of a webhook adapter (kept usable: the service signs with it).
ALTER TABLE providers ADD COLUMN webhook_secret text;

-- Offers sent to webhook adapters: written in the same transaction as the offer, delivered by
-- a loop that retries with backoff (an outbox towards providers' systems).
CREATE TABLE webhook_deliveries (
    delivery_id      uuid PRIMARY KEY,
    provider_id      text NOT NULL REFERENCES providers (provider_id),
    package_id       uuid NOT NULL,
    offer_round      integer NOT NULL,
    url              text NOT NULL,
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    give_up_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (package_id, offer_round, provider_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_provider ON webhook_deliveries (provider_id, created_at);

-- How each offer was answered (automatic, webhook, portal), and the earliest start bid.
ALTER TABLE offers ADD COLUMN adapter text;
ALTER TABLE offers ADD COLUMN earliest_start date;
