-- Named provider staff in the portal (decision 0126): a portal session is either an organisation's
-- API credential (sealed, as before) or a named person the identity provider signed in (their username,
-- subject and name from the ID token, the ID token sealed for signing out; no credential). Which
-- organisation they answer for is the providers service's, asked at sign-in and on every call.
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_check;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_check1;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_idp_staff;
ALTER TABLE sessions
    ADD CONSTRAINT sessions_staff_has_a_username CHECK (kind <> 'staff' OR username IS NOT NULL),
    ADD CONSTRAINT sessions_provider_is_someone CHECK (
        kind <> 'provider' OR (provider_id IS NOT NULL
            AND (provider_credential_sealed IS NOT NULL OR (idp_subject IS NOT NULL AND username IS NOT NULL)))),
    ADD CONSTRAINT sessions_idp_has_a_role CHECK (idp_subject IS NULL OR idp_role IS NOT NULL);
