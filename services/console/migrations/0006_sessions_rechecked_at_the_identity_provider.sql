-- A session begun at the identity provider is checked with it again while it lasts (decision 0166):
-- its refresh token (sealed with the session's own cookie, like the ID token) is exchanged every
-- CONSOLE_IDP_RECHECK_SECONDS, and the session ends when the identity provider refuses (account
-- disabled, signed out there) or no longer says the same role or provider.
ALTER TABLE sessions
    ADD COLUMN refresh_token_sealed text,
    ADD COLUMN idp_checked_at timestamptz;
