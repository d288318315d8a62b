-- Unread offers (decision 0127): an offer is new to a provider's organisation until one of its people
-- first opens it in the portal; who and when are kept, so a colleague's opening counts for the team.
ALTER TABLE offers
    ADD COLUMN opened_at timestamptz,
    ADD COLUMN opened_by_user uuid REFERENCES provider_users (user_id);
-- The portal's history: a provider's offers newest first.
CREATE INDEX offers_provider_received ON offers (provider_id, received_at DESC, package_id, offer_round);
