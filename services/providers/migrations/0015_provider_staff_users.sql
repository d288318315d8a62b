-- Named staff users under a provider's organisation (decision 0126). Who a person is comes from the
-- identity provider (a verified token with the realm role provider_staff: its preferred_username);
-- which organisation they answer for, and whether they manage its users, is this table's, kept by the
-- organisation's own admin users and the council's administrators. A removal ends access at once.
CREATE TABLE provider_users (
    user_id     uuid PRIMARY KEY,
    provider_id text NOT NULL REFERENCES providers (provider_id),
    username    text NOT NULL CHECK (length(username) BETWEEN 1 AND 100),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role        text NOT NULL CHECK (role IN ('staff', 'admin')),
    added_at    timestamptz NOT NULL DEFAULT now(),
    added_by    text NOT NULL,
    removed_at  timestamptz,
    removed_by  text
);
-- A person answers for one organisation at a time.
CREATE UNIQUE INDEX provider_users_live ON provider_users (lower(username)) WHERE removed_at IS NULL;
CREATE INDEX provider_users_by_provider ON provider_users (provider_id, added_at);

-- Who answered each offer: a named user (their id, never a name on any event), or the organisation's
-- API credential (its id) for a rostering system's answers.
ALTER TABLE offers
    ADD COLUMN answered_by_user uuid REFERENCES provider_users (user_id),
    ADD COLUMN answered_by_credential text;
