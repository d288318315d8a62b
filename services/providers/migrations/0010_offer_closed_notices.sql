-- Offer lifecycle notices (docs/decisions/0093): each offer that closes for a provider - won,
-- lost (with its bid's rank), or closed without an award, and why - is recorded once, listed
-- under GET /me/notices and, for a webhook adapter, delivered signed like an offer.
CREATE TABLE offer_closures (
    notice_id   uuid PRIMARY KEY,
    package_id  uuid NOT NULL,
    offer_round integer NOT NULL,
    provider_id text NOT NULL REFERENCES providers (provider_id),
    outcome     text NOT NULL CHECK (outcome IN ('won', 'lost', 'closed')),
    reason      text NOT NULL,
    rank        integer,
    ranked_bids integer,
    closed_at   timestamptz NOT NULL,
    UNIQUE (package_id, offer_round, provider_id)
);
CREATE INDEX offer_closures_provider ON offer_closures (provider_id, closed_at DESC);

-- A delivery says what it carries: an offer, a change, or an offer's closing notice. An offer and
-- its closing notice are two deliveries of one offer; one of each at most.
ALTER TABLE webhook_deliveries ADD COLUMN kind text NOT NULL DEFAULT 'offer'
    CHECK (kind IN ('offer', 'change', 'offer_closed'));
UPDATE webhook_deliveries SET kind = 'change' WHERE change_id IS NOT NULL;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_package_id_offer_round_provider_id_key;
CREATE UNIQUE INDEX webhook_deliveries_one_per_offer ON webhook_deliveries (package_id, offer_round, provider_id, kind)
    WHERE offer_round IS NOT NULL;
-- withdrawn: the offer closed or was answered before the delivery got through; never sent again.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_status_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'withdrawn'));
CREATE INDEX webhook_deliveries_offer ON webhook_deliveries (package_id) WHERE status = 'pending';
