-- A provider staff user's organisation is asserted by the identity provider (decision 0165), so a
-- username is unique within a provider's live users, not across the framework: an admin's add of a
-- username another organisation holds is no longer refused, and so no longer tells of it.
DROP INDEX provider_users_live;
CREATE UNIQUE INDEX provider_users_live ON provider_users (provider_id, lower(username)) WHERE removed_at IS NULL;
