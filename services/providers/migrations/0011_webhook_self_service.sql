-- Webhook self-service (issue 20, decision 0100): a provider registers and tests its webhook,
-- rotates its signing secret with an overlap, asks for a redelivery, and sees every attempt.

-- Secret rotation with an overlap: until previous_secret_expires_at, every delivery is signed
-- with both the new secret and the one it replaced (two v2= signatures in one header).
ALTER TABLE providers ADD COLUMN previous_webhook_secret text;
ALTER TABLE providers ADD COLUMN previous_secret_expires_at timestamptz;

-- A test delivery (a signed synthetic offer marked as a test) carries no package; a redelivery
-- is a new delivery of an earlier one's body, pointing back at it.
ALTER TABLE webhook_deliveries ALTER COLUMN package_id DROP NOT NULL;
ALTER TABLE webhook_deliveries ADD COLUMN redelivery_of uuid REFERENCES webhook_deliveries (delivery_id);
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_kind_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_kind_check
    CHECK (kind IN ('offer', 'change', 'offer_closed', 'test'));
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_test_has_no_package
    CHECK ((kind = 'test') = (package_id IS NULL));
-- Still one original delivery of each kind per offer; redeliveries are extra.
DROP INDEX webhook_deliveries_one_per_offer;
CREATE UNIQUE INDEX webhook_deliveries_one_per_offer ON webhook_deliveries (package_id, offer_round, provider_id, kind)
    WHERE offer_round IS NOT NULL AND redelivery_of IS NULL;
-- change_id was UNIQUE (one delivery per change); a change can now be redelivered too.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_change_id_key;
CREATE UNIQUE INDEX webhook_deliveries_one_per_change ON webhook_deliveries (change_id)
    WHERE change_id IS NOT NULL AND redelivery_of IS NULL;
-- The provider's list reads newest first, by a cursor of (created_at, delivery_id).
CREATE INDEX webhook_deliveries_provider_cursor ON webhook_deliveries (provider_id, created_at DESC, delivery_id DESC);

-- Every attempt of a delivery, not only the last one's error.
CREATE TABLE webhook_delivery_attempts (
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (delivery_id),
    attempt      integer NOT NULL CHECK (attempt >= 1),
    attempted_at timestamptz NOT NULL,
    duration_ms  integer NOT NULL CHECK (duration_ms >= 0),
    status_code  integer,
    error        text,
    signed_with  integer NOT NULL CHECK (signed_with IN (1, 2)),  -- how many secrets signed it (2: overlap)
    PRIMARY KEY (delivery_id, attempt)
);
